// Package bh1750sim simulates a ROHM BH1750FVI ambient light sensor for
// tests and `cityedge --simulate`, written from the datasheet on its own so
// that a mistake in the bh1750 driver is not mirrored.
package bh1750sim

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// Opcodes and the MTreg range (datasheet, instruction set architecture and
// "adjust measurement result for influence of optical window").
const (
	opPowerDown = 0x00
	opPowerOn   = 0x01
	opOneTimeH  = 0x20
	opMTregHigh = 0x40 // | MTreg[7:5]
	opMTregLow  = 0x60 // | MTreg[4:0]
	mtMin       = 31
	mtDefault   = 69
	mtMax       = 254
)

// Sim is a simulated BH1750 measuring the street's light: it follows the
// chip's state machine (power down, power on, one-time and continuous
// measurements, MTreg) and turns sim.World's illuminance into the count the
// chip would report, by inverting count / 1.2 × 69 / MTreg. It implements
// sim.Chip.
type Sim struct {
	mu    sync.Mutex
	world *sim.World
	now   func() time.Time

	powered bool
	mode    byte // measurement opcode in progress or repeating; 0 = none
	mt      byte
	mtHigh  byte // MTreg[7:5] as last written
	readyAt time.Time
	data    uint16  // the data register
	pending uint16  // the result of the measurement in progress
	lux     float64 // what the measurement in progress saw, for tests
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated chip in its power-on state (powered down,
// MTreg 69). A nil world gives a steady 500 lx.
func NewSim(w *sim.World) *Sim {
	return &Sim{world: w, now: time.Now, mt: mtDefault, mtHigh: mtDefault >> 5}
}

// typical measurement times at MTreg 69 (electrical characteristics).
func typTime(mode byte) time.Duration {
	if mode&0x03 == 0x03 { // L-resolution
		return 16 * time.Millisecond
	}
	return 120 * time.Millisecond
}

// Lux returns the illuminance the last measurement saw.
func (s *Sim) Lux() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lux
}

// SetClock makes the simulation read its time from c, such as a test's fake
// clock shared with the driver; the default is the real clock. Call it
// before the first transaction.
func (s *Sim) SetClock(c clockwork.Clock) { s.now = c.Now }

// Tx implements sim.Chip.
func (s *Sim) Tx(w, r []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.settle(now)
	if len(w) > 1 {
		return errors.New("bh1750 sim: one opcode per write: the chip takes no second opcode without a stop condition")
	}
	if len(w) == 1 {
		if err := s.command(now, w[0]); err != nil {
			return err
		}
	}
	if len(r) > 2 {
		return fmt.Errorf("bh1750 sim: read of %d bytes; the chip sends 2", len(r))
	}
	v := [2]byte{byte(s.data >> 8), byte(s.data)}
	copy(r, v[:])
	return nil
}

func (s *Sim) command(now time.Time, op byte) error {
	switch {
	case op == opPowerDown:
		s.powered, s.mode = false, 0
	case op == opPowerOn:
		s.powered = true
	case op == 0x07: // reset: clears the data register, only while powered
		if !s.powered {
			return errors.New("bh1750 sim: reset while powered down")
		}
		s.data = 0
	case op == 0x10 || op == 0x11 || op == 0x13 || op == opOneTimeH || op == 0x21 || op == 0x23:
		if !s.powered {
			return fmt.Errorf("bh1750 sim: measurement opcode %#02x while powered down (send power on first)", op)
		}
		if s.mt < mtMin || s.mt > mtMax {
			return fmt.Errorf("bh1750 sim: MTreg %d is outside %d..%d", s.mt, mtMin, mtMax)
		}
		s.start(now, op)
	case op&0xF8 == opMTregHigh:
		s.mtHigh = op & 0x07
	case op&0xE0 == opMTregLow:
		s.mt = s.mtHigh<<5 | op&0x1F
	default:
		return fmt.Errorf("bh1750 sim: unknown opcode %#02x", op)
	}
	return nil
}

func (s *Sim) start(now time.Time, mode byte) {
	s.mode = mode
	s.readyAt = now.Add(typTime(mode) * time.Duration(s.mt) / mtDefault)
	s.pending = s.count(now)
}

// settle completes a measurement whose time has come; a one-time
// measurement then powers the chip down, a continuous one starts the next.
func (s *Sim) settle(now time.Time) {
	if s.mode == 0 || now.Before(s.readyAt) {
		return
	}
	s.data = s.pending
	if s.mode&0x20 != 0 {
		s.mode, s.powered = 0, false
		return
	}
	s.start(now, s.mode)
}

func (s *Sim) count(at time.Time) uint16 {
	lux := 500.0
	if s.world != nil {
		lux = s.world.At(at).Lux
	}
	s.lux = lux
	c := lux * 1.2 * float64(s.mt) / mtDefault
	if s.mode&0x03 == 0x01 { // H-resolution mode 2: half a count per step
		c *= 2
	}
	return uint16(math.Min(math.Round(c), math.MaxUint16))
}
