// Package gpiolamp drives a lamp (a "FULL" light, a relay for a larger sign)
// from one GPIO output: the line is at the active level exactly while the
// lamp is on. There is no datasheet protocol here, only a level; the one
// decision is which level lights the lamp, which depends on the wiring (a
// transistor or a relay module driven high, or an active-low relay board).
package gpiolamp

import (
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
)

// Opts configures the lamp output.
type Opts struct {
	// Active is the level that lights the lamp: gpio.High for a transistor
	// or a relay module with an active-high input, gpio.Low for the common
	// active-low relay boards.
	Active gpio.Level
}

// DefaultOpts lights the lamp with the line high.
var DefaultOpts = Opts{Active: gpio.High}

// ParseActive reads the `active` key of a gpio-lamp sign: "high" or "low".
// The error names the key.
func ParseActive(s string) (gpio.Level, error) {
	switch s {
	case "high":
		return gpio.High, nil
	case "low":
		return gpio.Low, nil
	}
	return gpio.Low, fmt.Errorf("active = %q: want \"high\" (the line high lights the lamp) or \"low\"", s)
}

// Dev is one lamp. It is safe for concurrent use.
type Dev struct {
	mu     sync.Mutex
	pin    gpio.PinOut
	active gpio.Level
	on     bool
}

var _ conn.Resource = &Dev{}

// New configures p as an output with the lamp off.
func New(p gpio.PinOut, opts *Opts) (*Dev, error) {
	if p == nil {
		return nil, errors.New("gpiolamp: no pin")
	}
	if opts == nil {
		opts = &DefaultOpts
	}
	d := &Dev{pin: p, active: opts.Active}
	if err := d.pin.Out(!d.active); err != nil {
		return nil, fmt.Errorf("gpiolamp: %s: configure output, lamp off (%s): %w", p.Name(), !d.active, err)
	}
	return d, nil
}

// Set switches the lamp on or off.
func (d *Dev) Set(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.active
	if !on {
		l = !d.active
	}
	if err := d.pin.Out(l); err != nil {
		return fmt.Errorf("gpiolamp: %s: switch %s (%s): %w", d.pin.Name(), onOff(on), l, err)
	}
	d.on = on
	return nil
}

// On reports whether the lamp was last switched on successfully.
func (d *Dev) On() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.on
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Halt switches the lamp off: the lamp means "FULL", and a lamp left on by
// an agent that is gone would keep saying so.
func (d *Dev) Halt() error { return d.Set(false) }

// String implements conn.Resource.
func (d *Dev) String() string {
	return fmt.Sprintf("gpiolamp(%s active %s)", d.pin.Name(), d.active)
}
