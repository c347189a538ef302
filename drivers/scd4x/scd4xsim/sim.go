// Package scd4xsim simulates a Sensirion SCD4X at the command level for tests
// and `cityedge --simulate`, on top of sensirionsim, written from the
// datasheet on its own so that a mistake in the scd4x driver is not mirrored.
package scd4xsim

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion/sensirionsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

// The commands the simulation answers and their execution times, from the
// datasheet's command table, kept apart from the driver's so a wrong code or
// a short wait there fails its tests.
const (
	startPeriodicMeasurement = 0x21B1 // no execution time
	readMeasurement          = 0xEC05 // 1 ms
	stopPeriodicMeasurement  = 0x3F86 // 500 ms
	setASCEnabled            = 0x2416 // 1 ms, one argument
	getASCEnabled            = 0x2313 // 1 ms
	setSensorAltitude        = 0x2427 // 1 ms, one argument
	getSensorAltitude        = 0x2322 // 1 ms
	getDataReadyStatus       = 0xE4B8 // 1 ms
	getSerialNumber          = 0x3682 // 1 ms
	reinit                   = 0x3646 // 20 ms

	aMillisecond   = time.Millisecond
	stopTime       = 500 * time.Millisecond
	signalInterval = 5 * time.Second // periodic measurement's update interval
)

// Sim is a simulated SCD4x for `cityedge --simulate` and tests. It keeps the
// sensor's modes: in idle mode it takes the settings and serial number
// commands; in periodic measurement mode it takes only read_measurement,
// get_data_ready_status and stop_periodic_measurement, and produces a
// measurement of the World every 5 s, encoded by inverting the datasheet's
// formulas. Commands are CRC-framed and obey their execution times; anything
// else is not acknowledged.
type Sim struct {
	*sensirionsim.Sensor // SetClock, Tx, Measured

	mu        sync.Mutex
	serial    [3]uint16
	periodic  sensirionsim.Periodic
	asc       bool
	altitudeM uint16
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated SCD4x in idle mode, with the given 48-bit serial
// number, measuring world.
func NewSim(world *sim.World, serial uint64) *Sim {
	s := &Sim{asc: true,
		serial: [3]uint16{uint16(serial >> 32), uint16(serial >> 16), uint16(serial)}}
	s.Sensor = sensirionsim.NewSensor("scd4x sim", 2, world, s.handle)
	s.periodic = sensirionsim.Periodic{Every: signalInterval, Encode: s.encode}
	return s
}

// Settings returns the self-calibration and altitude settings the sensor
// holds.
func (s *Sim) Settings() (selfCalibration bool, altitudeM uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asc, s.altitudeM
}

// Periodic reports whether the sensor is in periodic measurement mode.
func (s *Sim) Periodic() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.periodic.Running()
}

var (
	errIdleOnly     = errors.New("not accepted during periodic measurement")
	errPeriodicOnly = errors.New("accepted only during periodic measurement")
)

func (s *Sim) handle(cmd uint16, args []uint16, now time.Time) ([]uint16, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.periodic.Advance(now)
	want := 0
	if cmd == setASCEnabled || cmd == setSensorAltitude {
		want = 1
	}
	if len(args) != want {
		return nil, 0, errors.New("wrong number of arguments")
	}
	switch cmd {
	case stopPeriodicMeasurement:
		s.periodic.Stop()
		return nil, stopTime, nil
	case getDataReadyStatus:
		if s.periodic.Ready() {
			return []uint16{0x8006}, aMillisecond, nil
		}
		return []uint16{0x8000}, aMillisecond, nil
	case readMeasurement:
		if !s.periodic.Running() {
			return nil, 0, errPeriodicOnly
		}
		data, ok := s.periodic.Take()
		if !ok {
			return nil, 0, errors.New("no measurement available")
		}
		return data, aMillisecond, nil
	}
	if s.periodic.Running() {
		return nil, 0, errIdleOnly
	}
	switch cmd {
	case startPeriodicMeasurement:
		s.periodic.Start(now)
		return nil, 0, nil
	case getSerialNumber:
		return s.serial[:], aMillisecond, nil
	case setASCEnabled:
		if args[0] > 1 {
			return nil, 0, errors.New("ASC takes 0 or 1")
		}
		s.asc = args[0] == 1
		return nil, aMillisecond, nil
	case getASCEnabled:
		if s.asc {
			return []uint16{1}, aMillisecond, nil
		}
		return []uint16{0}, aMillisecond, nil
	case setSensorAltitude:
		s.altitudeM = args[0]
		return nil, aMillisecond, nil
	case getSensorAltitude:
		return []uint16{s.altitudeM}, aMillisecond, nil
	case reinit:
		s.asc, s.altitudeM = true, 0
		return nil, 20 * time.Millisecond, nil
	}
	return nil, 0, errors.New("unknown command")
}

// encode is the measurement due at t (the sensor's buffer holds only the
// latest).
func (s *Sim) encode(t time.Time) []uint16 {
	wx := s.Sample(t)
	return []uint16{
		uint16(math.Round(math.Max(0, math.Min(40000, wx.CO2)))),
		sensirionsim.Ticks((wx.TempC + 45) / 175),
		sensirionsim.Ticks(wx.RH / 100),
	}
}
