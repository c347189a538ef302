package sht4x

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
)

// Sim is a simulated SHT4x for `cityedge --simulate` and tests. It answers
// the high-precision measurement, serial number and soft reset commands with
// CRC-framed words; a measurement encodes the World by inverting the
// datasheet's conversion formulas and is readable after the typical 6.9 ms. Other commands are
// not acknowledged.
type Sim struct {
	chip sensirion.SimChip

	mu       sync.Mutex
	world    *sim.World
	serial   uint32
	measured sim.Weather
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated SHT4x with the given serial number, measuring
// world.
func NewSim(world *sim.World, serial uint32) *Sim {
	s := &Sim{world: world, serial: serial}
	s.chip = sensirion.SimChip{Name: "sht4x sim", CmdLen: 1, Handle: s.handle}
	return s
}

// Tx implements sim.Chip.
func (s *Sim) Tx(w, r []byte) error { return s.chip.Tx(w, r) }

// Measured returns the weather the last measurement encoded.
func (s *Sim) Measured() sim.Weather {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.measured
}

func (s *Sim) handle(cmd uint16, args []uint16, now time.Time) ([]uint16, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(args) != 0 {
		return nil, 0, errors.New("takes no argument")
	}
	switch cmd {
	case cmdMeasureHigh:
		wx := s.world.At(now)
		s.measured = wx
		return []uint16{ticks((wx.TempC + 45) / 175), ticks((wx.RH + 6) / 125)}, 6900 * time.Microsecond, nil
	case cmdSerial:
		return []uint16{uint16(s.serial >> 16), uint16(s.serial)}, time.Millisecond, nil
	case cmdSoftReset:
		return nil, time.Millisecond, nil
	}
	return nil, 0, errors.New("unknown command")
}

// ticks is the inverse of the datasheet's linear conversions.
func ticks(fraction float64) uint16 {
	return uint16(math.Round(math.Max(0, math.Min(1, fraction)) * 65535))
}
