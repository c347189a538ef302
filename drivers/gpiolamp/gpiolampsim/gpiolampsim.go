// Package gpiolampsim is a simulated GPIO output for `cityedge --simulate`
// and tests: it records the level the gpiolamp driver drives, so the
// simulation can show whether the lamp is lit.
package gpiolampsim

import (
	"errors"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/pin"
)

// Pin is a simulated output line. Before the first Out it is an input.
type Pin struct {
	name string

	mu     sync.Mutex
	out    bool
	level  gpio.Level
	writes int
	onOut  func(gpio.Level)
}

var _ gpio.PinOut = (*Pin)(nil)

// New returns a simulated line named name, not yet driven.
func New(name string) *Pin { return &Pin{name: name} }

// OnOut sets f to be called after every Out with the level driven (nil for
// none). It runs on the caller's goroutine, outside the pin's lock.
func (p *Pin) OnOut(f func(gpio.Level)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onOut = f
}

// Level returns the level driven, and whether the line is an output at all.
func (p *Pin) Level() (gpio.Level, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level, p.out
}

// Writes counts the calls to Out.
func (p *Pin) Writes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writes
}

// Out implements gpio.PinOut.
func (p *Pin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.out, p.level = true, l
	p.writes++
	f := p.onOut
	p.mu.Unlock()
	if f != nil {
		f(l)
	}
	return nil
}

// PWM implements gpio.PinOut; a lamp output has none.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error {
	return errors.New("gpiolampsim: no PWM")
}

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.name }

// Number implements pin.Pin.
func (p *Pin) Number() int { return -1 }

// Function implements pin.Pin.
func (p *Pin) Function() string { return string(p.Func()) }

// Func implements pin.PinFunc.
func (p *Pin) Func() pin.Func {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out {
		return gpio.OUT
	}
	return gpio.IN
}

// SupportedFuncs implements pin.PinFunc.
func (p *Pin) SupportedFuncs() []pin.Func { return []pin.Func{gpio.IN, gpio.OUT} }

// SetFunc implements pin.PinFunc.
func (p *Pin) SetFunc(f pin.Func) error {
	switch f {
	case gpio.OUT:
		return p.Out(gpio.Low)
	case gpio.IN:
		p.mu.Lock()
		p.out = false
		p.mu.Unlock()
		return nil
	}
	return errors.New("gpiolampsim: only IN and OUT")
}

// Halt implements conn.Resource.
func (p *Pin) Halt() error { return nil }

// String implements conn.Resource.
func (p *Pin) String() string { return p.name }
