package sim

import (
	"errors"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/pin"
)

// Pin is a simulated GPIO input. Set changes its level and delivers an edge to
// a waiter when the configured edge mode asks for it.
type Pin struct {
	name string

	mu     sync.Mutex
	level  gpio.Level
	pull   gpio.Pull
	edge   gpio.Edge
	edges  chan struct{}
	halted chan struct{}
}

var _ gpio.PinIn = (*Pin)(nil)

// NewPin returns a simulated input pin at level l.
func NewPin(name string, l gpio.Level) *Pin {
	return &Pin{name: name, level: l, edges: make(chan struct{}, 1), halted: make(chan struct{}, 1)}
}

// Set drives the pin to l, as the detector's relay or beam would.
func (p *Pin) Set(l gpio.Level) {
	p.mu.Lock()
	changed := p.level != l
	p.level = l
	want := p.edge == gpio.BothEdges || (p.edge == gpio.RisingEdge && l == gpio.High) || (p.edge == gpio.FallingEdge && l == gpio.Low)
	p.mu.Unlock()
	if changed && want {
		select {
		case p.edges <- struct{}{}:
		default: // an edge is already pending; edges coalesce as on Linux
		}
	}
}

// In implements gpio.PinIn. It keeps the level: the simulated detector, not the
// pull resistor, drives the line.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pull, p.edge = pull, edge
	for {
		select {
		case <-p.edges:
		default:
			return nil
		}
	}
}

// Read implements gpio.PinIn.
func (p *Pin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

// WaitForEdge implements gpio.PinIn. A negative timeout waits forever; Halt
// interrupts a wait, which then returns false.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	var after <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		after = t.C
	}
	select {
	case <-p.edges:
		return true
	case <-p.halted:
		return false
	case <-after:
		return false
	}
}

// Pull implements gpio.PinIn.
func (p *Pin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull implements gpio.PinIn.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.Float }

// Halt implements conn.Resource; it interrupts a pending WaitForEdge.
func (p *Pin) Halt() error {
	select {
	case p.halted <- struct{}{}:
	default:
	}
	return nil
}

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.name }

// Number implements pin.Pin.
func (p *Pin) Number() int { return -1 }

// Function implements pin.Pin.
func (p *Pin) Function() string { return string(p.Func()) }

// Func implements pin.PinFunc.
func (p *Pin) Func() pin.Func { return gpio.IN }

// SupportedFuncs implements pin.PinFunc.
func (p *Pin) SupportedFuncs() []pin.Func { return []pin.Func{gpio.IN} }

// SetFunc implements pin.PinFunc.
func (p *Pin) SetFunc(f pin.Func) error {
	if f == gpio.IN {
		return nil
	}
	return errors.New("sim: pin is input only")
}

// String implements conn.Resource.
func (p *Pin) String() string { return p.name }
