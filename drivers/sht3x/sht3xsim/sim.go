// Package sht3xsim simulates a Sensirion SHT3X at the command level for tests
// and `cityedge --simulate`, on top of sensirionsim, written from the
// datasheet on its own so that a mistake in the sht3x driver is not mirrored.
package sht3xsim

import (
	"errors"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion/sensirionsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

// The commands the simulation answers, as the datasheet numbers them
// (section 4.3 table 9, 4.11 table 17). The simulator keeps its own table,
// written from the datasheet, so a wrong code in the driver fails its tests
// instead of being mirrored here.
const (
	measureHighRepeatability = 0x2400 // no clock stretching
	readStatus               = 0xF32D
	readSerial               = 0x3780
	softReset                = 0x30A2
	clearStatus              = 0x3041
	breakCmd                 = 0x3093
)

// Sim is a simulated SHT3x for `cityedge --simulate` and tests. It answers the
// single-shot, status, serial number, reset, clear-status and break commands
// with CRC-framed words; a measurement samples the World and encodes it by
// inverting the formulas of section 4.13, readable after the typical
// measurement time (12.5 ms). Other commands are not acknowledged.
type Sim struct {
	*sensirionsim.Sensor // SetClock, Tx, Measured

	mu     sync.Mutex
	serial uint32
	status uint16
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated SHT3x with the given serial number, measuring
// world.
func NewSim(world *sim.World, serial uint32) *Sim {
	// Status after power-up: alert pending and reset detected (table 18).
	s := &Sim{serial: serial, status: 0x8010}
	s.Sensor = sensirionsim.NewSensor("sht3x sim", 2, world, s.handle)
	return s
}

func (s *Sim) handle(cmd uint16, args []uint16, now time.Time) ([]uint16, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(args) != 0 {
		return nil, 0, errors.New("takes no argument")
	}
	switch cmd {
	case measureHighRepeatability:
		wx := s.Sample(now)
		return []uint16{sensirionsim.Ticks((wx.TempC + 45) / 175), sensirionsim.Ticks(wx.RH / 100)}, 12500 * time.Microsecond, nil
	case readStatus:
		return []uint16{s.status}, 0, nil
	case readSerial:
		return []uint16{uint16(s.serial >> 16), uint16(s.serial)}, 0, nil
	case softReset:
		s.status = 0x8010
		return nil, 1500 * time.Microsecond, nil
	case clearStatus:
		s.status &^= 0x8C10
		return nil, 0, nil
	case breakCmd:
		return nil, time.Millisecond, nil
	}
	return nil, 0, errors.New("unknown command")
}
