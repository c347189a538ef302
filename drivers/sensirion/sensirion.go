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
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/wait"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
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

// ErrRange reports a measured value outside the range the chip's datasheet
// specifies.
var ErrRange = errors.New("outside the datasheet range")

// Decode is the first step of every chip's pure decoder: it checks that raw
// is exactly n words, each with its CRC, and returns the words.
func Decode(raw []byte, n int) ([]uint16, error) {
	if len(raw) != 3*n {
		return nil, fmt.Errorf("measurement of %d bytes, want %d", len(raw), 3*n)
	}
	w, err := Words(raw)
	if err != nil {
		return nil, fmt.Errorf("measurement: %w", err)
	}
	return w, nil
}

// Climate is a temperature and relative humidity measurement, all that the
// SHT3x and SHT4x measure.
type Climate struct {
	Temperature physic.Temperature
	Humidity    physic.RelativeHumidity
}

// Temperature converts a temperature word with the formula the SHT3x
// (section 4.13), SHT4x and SCD4x datasheets share,
//
//	T = -45 °C + 175 °C · S_T / (2¹⁶ - 1),
//
// rounded to the nanokelvin, and refuses a temperature outside the chip's
// range of minC..maxC °C with ErrRange.
func Temperature(w uint16, minC, maxC int) (physic.Temperature, error) {
	t := physic.ZeroCelsius - 45*physic.Celsius + physic.Temperature((int64(w)*175*int64(physic.Celsius)+32767)/65535)
	if c := t - physic.ZeroCelsius; c < physic.Temperature(minC)*physic.Celsius || c > physic.Temperature(maxC)*physic.Celsius {
		return t, fmt.Errorf("temperature %v %w (%d..%d °C)", t, ErrRange, minC, maxC)
	}
	return t, nil
}

// Humidity converts a relative humidity word with the formula of the SHT3x
// (section 4.13) and SCD4x datasheets, RH = 100 %RH · S_RH / (2¹⁶ - 1),
// rounded; it cannot leave 0..100 %RH.
func Humidity(w uint16) physic.RelativeHumidity {
	return physic.RelativeHumidity((int64(w)*100*int64(physic.PercentRH) + 32767) / 65535)
}

// Dev talks to one Sensirion chip. Its commands are safe for concurrent
// use: each runs whole (write, execution time, read) before the next.
type Dev struct {
	I2C i2c.Dev
	// Clock measures the execution times; nil is the real clock. Tests
	// inject a fake one.
	Clock clockwork.Clock

	mu sync.Mutex
}

// Exec runs one command: it writes cmd (one or two bytes) followed by args,
// each word with its CRC, waits the command's execution time wait, and then,
// when words > 0, reads that many words and returns them raw, CRCs included,
// for the caller's pure decoder to check.
func (d *Dev) Exec(ctx context.Context, cmd []byte, args []uint16, wait time.Duration, words int) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
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

// ReadWords runs a command that answers n words (Exec) and checks their
// CRCs.
func (d *Dev) ReadWords(ctx context.Context, cmd []byte, wait time.Duration, n int) ([]uint16, error) {
	raw, err := d.Exec(ctx, cmd, nil, wait, n)
	if err != nil {
		return nil, err
	}
	return Words(raw)
}

// Read runs a measurement command on d (Exec: write cmd, wait, read the
// given number of words) and hands the raw reply, CRCs included, to the
// chip's pure decoder.
func Read[M any](ctx context.Context, d *Dev, cmd []byte, wait time.Duration, words int, decode func([]byte) (M, error)) (M, error) {
	raw, err := d.Exec(ctx, cmd, nil, wait, words)
	if err != nil {
		var zero M
		return zero, err
	}
	return decode(raw)
}

// ErrNotReady means the sensor had no new measurement within the wait.
var ErrNotReady = errors.New("no new measurement")

// WaitReady polls the chip's data-ready command (cmd, executing in wait)
// every `every` until ready accepts the status word, for at most timeout.
// The SCD4x and SPS30 both make measurements on their own schedule and
// report readiness this way; only the meaning of the word differs.
func (d *Dev) WaitReady(ctx context.Context, cmd []byte, wait, every, timeout time.Duration, ready func(word uint16) bool) error {
	for waited := time.Duration(0); ; waited += every {
		w, err := d.ReadWords(ctx, cmd, wait, 1)
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
