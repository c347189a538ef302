// Package ht16k33sim simulates a Holtek HT16K33 on the common 4-digit
// 7-segment backpack at the register level, for `cityedge --simulate` and
// tests: it implements sim.Chip, so the real ht16k33 driver talks to it
// through a sim.Bus, and it records what a person in the street would read
// off the display.
//
// It keeps the chip's state as the datasheet (Rev. 1.10, "Command Summary")
// defines it: the System Setup Register (oscillator on or standby), the
// Display Setup Register (display on, blinking), the dimming step, the 16
// bytes of display RAM and the Display Data Address Pointer. It refuses what
// the datasheet does not promise (two commands in one transaction, a RAM
// write or read past 0x0F, an unknown command), so a driver bug shows up as
// an error rather than as a plausible display.
//
// Reading the display back into characters follows the backpack's wiring
// (digits at RAM 0x00, 0x02, 0x06, 0x08, colon at bit 1 of 0x04, segments a
// to g in bits 0 to 6, decimal point in bit 7) with its own glyph table,
// kept apart from the driver's encoder on purpose: the simulator is the
// board, and a test that round-trips through both catches a mistake in
// either.
package ht16k33sim

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cityedge/cityedge/drivers/sim"
)

const ramSize = 16

// Backpack wiring.
var digitAddr = [4]int{0x00, 0x02, 0x06, 0x08}

const (
	colonAddr = 0x04
	colonBit  = 0x02
	dpBit     = 0x80
)

// read maps the segments a person sees (a to g, bits 0 to 6) to the
// character they read.
var read = map[byte]rune{
	0x00: ' ', 0x40: '-', 0x08: '_',
	0x3F: '0', 0x06: '1', 0x5B: '2', 0x4F: '3', 0x66: '4',
	0x6D: '5', 0x7D: '6', 0x07: '7', 0x7F: '8', 0x6F: '9',
	0x77: 'A', 0x7C: 'b', 0x39: 'C', 0x5E: 'd', 0x79: 'E', 0x71: 'F',
	0x76: 'H', 0x38: 'L', 0x54: 'n', 0x5C: 'o', 0x73: 'P', 0x50: 'r',
	0x78: 't', 0x3E: 'U',
}

// Unreadable stands for a digit whose lit segments form no character.
const Unreadable = '?'

// Display is the state of the display as a person sees it, with the chip
// settings behind it.
type Display struct {
	// Lit is true when the oscillator runs and the display is on: only
	// then do the segments light.
	Lit bool
	// Text is the four digits decoded from the RAM, whether lit or not;
	// Unreadable for a digit whose segments form no character.
	Text  string
	Dots  [4]bool // decimal points
	Colon bool
	// Blink is the blinking setting: 0 off, 1 2 Hz, 2 1 Hz, 3 0.5 Hz.
	Blink int
	// Brightness is the dimming step, 0 (duty 1/16) to 15 (16/16).
	Brightness int
	RAM        [ramSize]byte
}

// Shows is what a passer-by reads: the text when the display is lit, ""
// when it is dark.
func (d Display) Shows() string {
	if !d.Lit {
		return ""
	}
	return d.Text
}

// Chip is a simulated HT16K33. It is safe for concurrent use.
type Chip struct {
	mu         sync.Mutex
	osc        bool
	on         bool
	blink      int
	dim        int
	ram        [ramSize]byte
	ptr        int
	ramWrites  int
	onRAMWrite func(Display)
}

var _ sim.Chip = (*Chip)(nil)

// New returns a chip in its power-on state: standby (oscillator off),
// display off, maximum duty, and RAM holding ram (what a real chip holds at
// power-on is not defined; nil gives zeros).
func New(ram []byte) *Chip {
	c := &Chip{dim: 15}
	copy(c.ram[:], ram)
	return c
}

// OnRAMWrite sets f to be called after every display RAM write with the
// display as it then is (nil for none). f runs on the writer's goroutine
// after the transaction, outside the chip's lock.
func (c *Chip) OnRAMWrite(f func(Display)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onRAMWrite = f
}

// Display returns the display as it is now.
func (c *Chip) Display() Display {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.display()
}

// RAMWrites counts the transactions that wrote display RAM.
func (c *Chip) RAMWrites() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ramWrites
}

func (c *Chip) display() Display {
	d := Display{Lit: c.osc && c.on, Blink: c.blink, Brightness: c.dim, RAM: c.ram}
	var text strings.Builder
	for i, a := range digitAddr {
		ch, ok := read[c.ram[a]&^dpBit]
		if !ok {
			ch = Unreadable
		}
		text.WriteRune(ch)
		d.Dots[i] = c.ram[a]&dpBit != 0
	}
	d.Text = text.String()
	d.Colon = c.ram[colonAddr]&colonBit != 0
	return d
}

// Tx implements sim.Chip.
func (c *Chip) Tx(w, r []byte) error {
	c.mu.Lock()
	wrote, err := c.tx(w, r)
	var f func(Display)
	var d Display
	if wrote {
		c.ramWrites++
		f, d = c.onRAMWrite, c.display()
	}
	c.mu.Unlock()
	if f != nil {
		f(d)
	}
	return err
}

func (c *Chip) tx(w, r []byte) (wroteRAM bool, err error) {
	if len(w) == 0 {
		if len(r) == 0 {
			return false, nil // a bare address probe: acknowledged
		}
		return false, c.readRAM(r)
	}
	cmd := w[0]
	switch {
	case cmd <= 0x0F: // Display Data Address Pointer, then data
		c.ptr = int(cmd)
		data := w[1:]
		if len(data) > 0 && len(r) > 0 {
			return false, errors.New("ht16k33 sim: a transaction either writes or reads the display RAM")
		}
		if len(data) > 0 {
			if c.ptr+len(data) > ramSize {
				return false, fmt.Errorf("ht16k33 sim: %d bytes written from %#02x run past the display RAM's end at 0x0f", len(data), c.ptr)
			}
			copy(c.ram[c.ptr:], data)
			c.ptr += len(data)
			return true, nil
		}
		return false, c.readRAM(r)
	case len(w) > 1:
		return false, fmt.Errorf("ht16k33 sim: command %#02x followed by %d more bytes: one command per transaction", cmd, len(w)-1)
	case cmd&0xFE == 0x20: // System Setup Register
		c.osc = cmd&0x01 != 0
	case cmd&0xF8 == 0x80: // Display Setup Register
		c.on = cmd&0x01 != 0
		c.blink = int(cmd>>1) & 0x03
	case cmd&0xF0 == 0xE0: // Digital Dimming Data Input
		c.dim = int(cmd & 0x0F)
	case cmd&0xFE == 0xA0: // ROW/INT Set: the backpack uses ROW; nothing to model
	case cmd >= 0x40 && cmd <= 0x45 || cmd == 0x60: // key data, INT flag: no keys wired
		for i := range r {
			r[i] = 0
		}
		return false, nil
	default:
		return false, fmt.Errorf("ht16k33 sim: unknown command %#02x", cmd)
	}
	if len(r) > 0 {
		return false, fmt.Errorf("ht16k33 sim: command %#02x returns no data (read of %d bytes)", cmd, len(r))
	}
	return false, nil
}

func (c *Chip) readRAM(r []byte) error {
	if c.ptr+len(r) > ramSize {
		return fmt.Errorf("ht16k33 sim: %d bytes read from %#02x run past the display RAM's end at 0x0f", len(r), c.ptr)
	}
	copy(r, c.ram[c.ptr:])
	c.ptr += len(r)
	return nil
}
