// Package sensirion holds what Sensirion's I2C sensors (SHT3x, SHT4x, SCD4x,
// SPS30) have in common: data travels as 16-bit big-endian words, each
// followed by a CRC-8 (polynomial 0x31, init 0xFF; SHT3x datasheet section
// 4.12, table 20, identical in the SHT4x, SCD4x and SPS30 datasheets), and a
// command is a write, a wait for its execution time, then a read.
//
// The I2C side the simulated chips share lives apart, in
// drivers/sensirion/sensirionsim, so no driver links simulation code.
package sensirion

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c"
)

// ErrCRC reports a word whose CRC does not match: a disturbed bus, or not a
// Sensirion chip at that address.
var ErrCRC = errors.New("CRC mismatch")

// CRC8 is the Sensirion CRC-8 of b: polynomial x⁸+x⁵+x⁴+1 (0x31), init 0xFF,
// no reflection, no final XOR. CRC8([]byte{0xBE, 0xEF}) is 0x92.
func CRC8(b []byte) byte {
	crc := byte(0xFF)
	for _, v := range b {
		crc ^= v
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// AppendWord appends w big-endian and its CRC to b.
func AppendWord(b []byte, w uint16) []byte {
	b = binary.BigEndian.AppendUint16(b, w)
	return append(b, CRC8(b[len(b)-2:]))
}

// Words checks and strips the CRCs of raw, a sequence of 3-byte groups (two
// data bytes, one CRC).
func Words(raw []byte) ([]uint16, error) {
	if len(raw)%3 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of words with CRC", len(raw))
	}
	w := make([]uint16, len(raw)/3)
	for i := range w {
		g := raw[3*i : 3*i+3]
		if got, want := g[2], CRC8(g[:2]); got != want {
			return nil, fmt.Errorf("word %d (%#02x %#02x): CRC %#02x, want %#02x: %w", i, g[0], g[1], got, want, ErrCRC)
		}
		w[i] = binary.BigEndian.Uint16(g)
	}
	return w, nil
}

// Dev talks to one Sensirion chip.
type Dev struct {
	I2C i2c.Dev
	// Clock measures the execution times; nil is the real clock. Tests
	// inject a fake one.
	Clock clockwork.Clock
}

// Exec runs one command: it writes cmd (one or two bytes) followed by args,
// each word with its CRC, waits the command's execution time wait, and then,
// when words > 0, reads that many words and returns them raw, CRCs included,
// for the caller's pure decoder to check.
func (d *Dev) Exec(ctx context.Context, cmd []byte, args []uint16, wait time.Duration, words int) ([]byte, error) {
	w := make([]byte, len(cmd), len(cmd)+3*len(args))
	copy(w, cmd)
	for _, a := range args {
		w = AppendWord(w, a)
	}
	if err := d.I2C.Tx(w, nil); err != nil {
		return nil, fmt.Errorf("command %#x: %w", cmd, err)
	}
	if wait > 0 {
		if err := d.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("command %#x: %w", cmd, err)
		}
	}
	if words == 0 {
		return nil, nil
	}
	raw := make([]byte, 3*words)
	if err := d.I2C.Tx(nil, raw); err != nil {
		return nil, fmt.Errorf("command %#x: read: %w", cmd, err)
	}
	return raw, nil
}

// ErrNotReady means the sensor had no new measurement within the wait.
var ErrNotReady = errors.New("no new measurement")

// WaitReady polls the chip's data-ready command (cmd, executing in wait)
// every `every` until ready accepts the status word, for at most timeout.
// The SCD4x and SPS30 both make measurements on their own schedule and
// report readiness this way; only the meaning of the word differs.
func (d *Dev) WaitReady(ctx context.Context, cmd []byte, wait, every, timeout time.Duration, ready func(word uint16) bool) error {
	for waited := time.Duration(0); ; waited += every {
		raw, err := d.Exec(ctx, cmd, nil, wait, 1)
		if err != nil {
			return fmt.Errorf("data-ready status: %w", err)
		}
		w, err := Words(raw)
		if err != nil {
			return fmt.Errorf("data-ready status: %w", err)
		}
		if ready(w[0]) {
			return nil
		}
		if waited >= timeout {
			return fmt.Errorf("%w within %v", ErrNotReady, timeout)
		}
		if err := d.sleep(ctx, every); err != nil {
			return fmt.Errorf("wait for data: %w", err)
		}
	}
}

func (d *Dev) sleep(ctx context.Context, t time.Duration) error {
	return wait.Sleep(ctx, d.Clock, t)
}

// Cmd16 returns a 16-bit command as the two bytes sent, MSB first.
func Cmd16(c uint16) []byte { return []byte{byte(c >> 8), byte(c)} }
