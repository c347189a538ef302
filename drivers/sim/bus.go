// Package sim provides the simulated hardware behind `cityedge --simulate`:
// an I2C bus that routes each transaction to a simulated chip holding real
// register contents, a GPIO input pin whose level a test or a scenario flips,
// and a slowly changing street environment that the simulated chips measure.
//
// Simulated chips live beside their drivers (bme280.Sim, sht3x.Sim, ...)
// because each one is the inverse of its driver's datasheet formulas.
package sim

import (
	"errors"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// ErrNACK is what the simulated bus returns when no chip answers at an
// address, or a chip refuses a transfer, as the Linux i2c-dev driver reports a
// missing acknowledge.
var ErrNACK = errors.New("sim: no acknowledge")

// Chip is a simulated I2C device. Tx gets each transaction addressed to the
// chip: the bytes written, then a buffer to fill with the bytes read.
type Chip interface {
	Tx(w, r []byte) error
}

// Bus is a simulated I2C bus. It is safe for concurrent use; transactions are
// serialised as on a real bus.
type Bus struct {
	name  string
	mu    sync.Mutex
	chips map[uint16]Chip
	fail  map[uint16]error
}

var _ i2c.Bus = (*Bus)(nil)

// NewBus returns an empty simulated bus named name (e.g. "sim-i2c1").
func NewBus(name string) *Bus {
	return &Bus{name: name, chips: map[uint16]Chip{}, fail: map[uint16]error{}}
}

// Attach puts chip at addr, replacing what was there.
func (b *Bus) Attach(addr uint16, chip Chip) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chips[addr] = chip
}

// Detach removes the chip at addr, as if it were unplugged.
func (b *Bus) Detach(addr uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.chips, addr)
}

// Fail makes every transaction at addr fail with err until Fail(addr, nil).
func (b *Bus) Fail(addr uint16, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		delete(b.fail, addr)
		return
	}
	b.fail[addr] = err
}

// Tx implements i2c.Bus.
func (b *Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail[addr]; err != nil {
		return fmt.Errorf("%s: address %#02x: %w", b.name, addr, err)
	}
	c, ok := b.chips[addr]
	if !ok {
		return fmt.Errorf("%s: address %#02x: %w", b.name, addr, ErrNACK)
	}
	if err := c.Tx(w, r); err != nil {
		return fmt.Errorf("%s: address %#02x: %w", b.name, addr, err)
	}
	return nil
}

// SetSpeed implements i2c.Bus; the simulated bus has no clock.
func (b *Bus) SetSpeed(physic.Frequency) error { return nil }

// String implements i2c.Bus.
func (b *Bus) String() string { return b.name }
