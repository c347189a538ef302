// Package sht4xsim simulates a Sensirion SHT4X at the command level for tests
// and `cityedge --simulate`, on top of sensirionsim, written from the
// datasheet on its own so that a mistake in the sht4x driver is not mirrored.
package sht4xsim

import (
	"errors"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion/sensirionsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

// The commands the simulation answers (datasheet command table), kept apart
// from the driver's so a wrong code there fails its tests.
const (
	measureHighPrecision = 0xFD
	readSerial           = 0x89
	softReset            = 0x94
)

// Sim is a simulated SHT4x for `cityedge --simulate` and tests. It answers
// the high-precision measurement, serial number and soft reset commands with
// CRC-framed words; a measurement encodes the World by inverting the
// datasheet's conversion formulas and is readable after the typical 6.9 ms. Other commands are
// not acknowledged.
type Sim struct {
	*sensirionsim.Sensor // SetClock, Tx, Measured

	mu     sync.Mutex
	serial uint32
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated SHT4x with the given serial number, measuring
// world.
func NewSim(world *sim.World, serial uint32) *Sim {
	s := &Sim{serial: serial}
	s.Sensor = sensirionsim.NewSensor("sht4x sim", 1, world, s.handle)
	return s
}

func (s *Sim) handle(cmd uint16, args []uint16, now time.Time) ([]uint16, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(args) != 0 {
		return nil, 0, errors.New("takes no argument")
	}
	switch cmd {
	case measureHighPrecision:
		wx := s.Sample(now)
		return []uint16{sensirionsim.Ticks((wx.TempC + 45) / 175), sensirionsim.Ticks((wx.RH + 6) / 125)}, 6900 * time.Microsecond, nil
	case readSerial:
		return []uint16{uint16(s.serial >> 16), uint16(s.serial)}, time.Millisecond, nil
	case softReset:
		return nil, time.Millisecond, nil
	}
	return nil, 0, errors.New("unknown command")
}
