// Package ht16k33 drives a Holtek HT16K33 LED controller (I2C address 0x70 to
// 0x77, set by pins A0 to A2) wired as the common 4-digit 7-segment display
// backpack, following the Holtek "HT16K33 RAM Mapping 16*8 LED Controller
// Driver with keyscan" datasheet, Rev. 1.10.
//
// Start-up ("Command Summary"): the System Setup Register command 0x20|S with
// S = 1 (0x21) starts the internal oscillator, leaving standby; the display
// RAM is then cleared by writing 16 zero bytes from the Display Data Address
// Pointer 0x00 (the pointer auto-increments, so one transaction writes the
// whole RAM) and read back, which is the only check the chip allows (it has
// no identity register); the Digital Dimming command 0xE0|P sets the row
// duty to (P+1)/16; the Display Setup Register command 0x80|B1B0|D with D = 1
// and no blinking (0x81) turns the display on. Each command is its own
// transaction. Show writes the whole RAM in one transaction, so a sign
// never shows half of an update.
//
// The chip is a display: it has nothing to sense, starts no goroutines and
// never waits.
package ht16k33

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
)

// Commands ("Command Summary").
const (
	cmdSystemSetup  = 0x20 // | S: 1 = oscillator on (normal operation), 0 = standby
	oscillatorOn    = 0x01
	cmdDisplaySetup = 0x80 // | B1 B0 (blinking: 00 off) << 1 | D (display on)
	displayOn       = 0x01
	cmdDimming      = 0xE0 // | P3..P0: row duty (P+1)/16
	addrRAM         = 0x00 // Display Data Address Pointer, 0x00 to 0x0F
)

// Address range (A2 A1 A0 pins on the slave address byte) and brightness
// range (the 16 dimming steps).
const (
	AddrMin       = 0x70
	AddrMax       = 0x77
	BrightnessMax = 15
)

// Opts configures the display.
type Opts struct {
	// Addr is the I2C address, 0x70 (no address jumper closed) to 0x77.
	Addr uint16
	// Brightness is the dimming step, 0 (duty 1/16) to 15 (16/16).
	Brightness int
}

// DefaultOpts is the backpack with no address jumper closed, at half
// brightness (duty 9/16), readable by day and not glaring at night.
var DefaultOpts = Opts{Addr: AddrMin, Brightness: 8}

// Validate checks the options and names the offending key (address,
// brightness) as a [[signs]] table spells it.
func (o *Opts) Validate() error {
	if o.Addr < AddrMin || o.Addr > AddrMax {
		return fmt.Errorf("address = %#02x: an HT16K33 answers at %#02x to %#02x (%#02x with no jumper closed)", o.Addr, AddrMin, AddrMax, AddrMin)
	}
	if o.Brightness < 0 || o.Brightness > BrightnessMax {
		return fmt.Errorf("brightness = %d: want 0 to %d (default %d)", o.Brightness, BrightnessMax, DefaultOpts.Brightness)
	}
	return nil
}

// Dev is an opened display. It is safe for concurrent use.
type Dev struct {
	mu sync.Mutex
	c  i2c.Dev
}

var _ conn.Resource = &Dev{}

// New starts the oscillator, clears the display RAM and checks that it reads
// back cleared, sets the brightness and turns the display on (blank).
func New(bus i2c.Bus, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("ht16k33: %w", err)
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: opts.Addr}}
	if err := d.c.Tx([]byte{cmdSystemSetup | oscillatorOn}, nil); err != nil {
		return nil, fmt.Errorf("ht16k33: system setup (oscillator on): %w", err)
	}
	var blank [RAMSize]byte
	if err := d.write(blank); err != nil {
		return nil, err
	}
	var got [RAMSize]byte
	if err := d.c.Tx([]byte{addrRAM}, got[:]); err != nil {
		return nil, fmt.Errorf("ht16k33: read back display RAM: %w", err)
	}
	if got != blank {
		return nil, fmt.Errorf("ht16k33: %s %#02x: display RAM reads % x after clearing, want %d zero bytes: not an HT16K33?", bus, opts.Addr, got[:], RAMSize)
	}
	if err := d.setBrightness(opts.Brightness); err != nil {
		return nil, err
	}
	if err := d.c.Tx([]byte{cmdDisplaySetup | displayOn}, nil); err != nil {
		return nil, fmt.Errorf("ht16k33: display setup (on, no blinking): %w", err)
	}
	return d, nil
}

// Show displays text right-aligned: digits, "FULL", "----", or any other
// text of at most four characters from the 7-segment glyphs (0-9, space, -,
// _, A b C d E F H L n o P r t U).
func (d *Dev) Show(text string) error {
	ram, err := Encode(text)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.write(ram)
}

// LampTest lights every segment, decimal point and the colon, so a person at
// the sign can see that none is broken.
func (d *Dev) LampTest() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.write(lampTest())
}

// SetBrightness changes the dimming step, 0 to 15.
func (d *Dev) SetBrightness(n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.setBrightness(n)
}

func (d *Dev) setBrightness(n int) error {
	if n < 0 || n > BrightnessMax {
		return fmt.Errorf("ht16k33: brightness %d is outside 0..%d", n, BrightnessMax)
	}
	if err := d.c.Tx([]byte{cmdDimming | byte(n)}, nil); err != nil {
		return fmt.Errorf("ht16k33: dimming set %d/16: %w", n+1, err)
	}
	return nil
}

// write puts ram into the display RAM from address 0x00 in one transaction.
func (d *Dev) write(ram [RAMSize]byte) error {
	w := make([]byte, 0, 1+RAMSize)
	w = append(w, addrRAM)
	w = append(w, ram[:]...)
	if err := d.c.Tx(w, nil); err != nil {
		return fmt.Errorf("ht16k33: write display RAM: %w", err)
	}
	return nil
}

// Halt implements conn.Resource. It leaves the display as it is: the chip
// keeps showing its RAM without the host, and a sign must keep what the
// agent last put there (the agent shows "----" before it stops). There is
// nothing in progress to stop.
func (d *Dev) Halt() error { return nil }

// String implements conn.Resource.
func (d *Dev) String() string { return fmt.Sprintf("ht16k33(%s %#02x)", d.c.Bus, d.c.Addr) }
