package sht3x

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
)

// Sim is a simulated SHT3x for `cityedge --simulate` and tests. It answers the
// single-shot, status, serial number, reset, clear-status and break commands
// with CRC-framed words; a measurement samples the World and encodes it by
// inverting the formulas of section 4.13, readable after the typical
// measurement time (12.5 ms). Other commands are not acknowledged.
type Sim struct {
	chip sensirion.SimChip

	mu       sync.Mutex
	world    *sim.World
	serial   uint32
	status   uint16
	measured sim.Weather
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated SHT3x with the given serial number, measuring
// world.
func NewSim(world *sim.World, serial uint32) *Sim {
	// Status after power-up: alert pending and reset detected (table 18).
	s := &Sim{world: world, serial: serial, status: 0x8010}
	s.chip = sensirion.SimChip{Name: "sht3x sim", CmdLen: 2, Handle: s.handle}
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
		return []uint16{ticks((wx.TempC + 45) / 175), ticks(wx.RH / 100)}, 12500 * time.Microsecond, nil
	case cmdStatus:
		return []uint16{s.status}, 0, nil
	case cmdSerial:
		return serialWords(s.serial), 0, nil
	case cmdSoftReset:
		s.status = 0x8010
		return nil, 1500 * time.Microsecond, nil
	case cmdClearStatus:
		s.status &^= 0x8C10
		return nil, 0, nil
	case cmdBreak:
		return nil, time.Millisecond, nil
	}
	return nil, 0, errors.New("unknown command")
}

// ticks is the inverse of the datasheet's linear conversions: the 16-bit
// signal for a fraction of full scale.
func ticks(fraction float64) uint16 {
	return uint16(math.Round(math.Max(0, math.Min(1, fraction)) * 65535))
}
