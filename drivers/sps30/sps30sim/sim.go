// Package sps30sim simulates a Sensirion SPS30 at the command level for tests
// and `cityedge --simulate`, on top of sensirionsim, written from the
// datasheet on its own so that a mistake in the sps30 driver is not mirrored.
package sps30sim

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion/sensirionsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

// The commands (pointer addresses) the simulation answers and their
// execution times, from the datasheet, kept apart from the driver's so a
// wrong code or a short wait there fails its tests.
const (
	startMeasurement   = 0x0010 // 20 ms; argument 0x0300: IEEE 754 floats
	stopMeasurement    = 0x0104 // 20 ms
	readDataReady      = 0x0202
	readMeasuredValues = 0x0300
	startFanCleaning   = 0x5607
	autoCleanInterval  = 0x8004 // read 5 ms, write 20 ms
	readProductType    = 0xD002
	readSerialNumber   = 0xD033
	readVersion        = 0xD100
	deviceReset        = 0xD304 // 100 ms

	floatFormat   = 0x0300
	productType   = "00080000"
	startStop     = 20 * time.Millisecond
	readInterval  = 5 * time.Millisecond
	writeInterval = 20 * time.Millisecond
	resetTime     = 100 * time.Millisecond
	measuresEvery = time.Second
	factoryClean  = 168 * time.Hour // 604800 s
)

// Sim is a simulated SPS30 for `cityedge --simulate` and tests. It keeps the
// sensor's idle and measurement modes, its device information, its
// auto-cleaning interval (which, as on the sensor, reads back its old value
// until the next reset), and in measurement mode produces a float-format
// measurement of the World every second with the data-ready flag. Commands
// are CRC-framed and obey their execution times; anything else is not
// acknowledged.
type Sim struct {
	*sensirionsim.Sensor // SetClock, Tx, Measured

	mu        sync.Mutex
	serial    string
	measuring sensirionsim.Periodic
	interval  uint32 // in force
	readBack  uint32 // what a read returns: the value at the last reset
	writes    int
	cleanings int
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated SPS30 in idle mode with the factory cleaning
// interval and the given serial number (up to 31 printable characters).
func NewSim(world *sim.World, serial string) *Sim {
	iv := uint32(factoryClean / time.Second)
	if len(serial) > 31 {
		serial = serial[:31] // 32 bytes with the terminating NUL
	}
	s := &Sim{serial: serial, interval: iv, readBack: iv}
	s.Sensor = sensirionsim.NewSensor("sps30 sim", 2, world, s.handle)
	s.measuring = sensirionsim.Periodic{Every: measuresEvery, Encode: s.encode}
	return s
}

// CleaningInterval returns the auto-cleaning interval in force and how many
// times it was written (flash write cycles).
func (s *Sim) CleaningInterval() (time.Duration, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.interval) * time.Second, s.writes
}

// Measuring reports whether the sensor is in measurement mode.
func (s *Sim) Measuring() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.measuring.Running()
}

func (s *Sim) handle(cmd uint16, args []uint16, now time.Time) ([]uint16, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.measuring.Advance(now)
	if len(args) != 0 && cmd != startMeasurement && cmd != autoCleanInterval {
		return nil, 0, errors.New("takes no argument")
	}
	switch cmd {
	case deviceReset:
		s.measuring.Stop()
		s.readBack = s.interval
		return nil, resetTime, nil
	case readProductType:
		return ascii(productType, 4), 0, nil
	case readSerialNumber:
		return ascii(s.serial, 16), 0, nil
	case readVersion:
		return []uint16{0x0202}, 0, nil
	case autoCleanInterval:
		switch len(args) {
		case 0:
			return []uint16{uint16(s.readBack >> 16), uint16(s.readBack)}, readInterval, nil
		case 2:
			s.interval = uint32(args[0])<<16 | uint32(args[1])
			s.writes++
			return nil, writeInterval, nil
		}
		return nil, 0, errors.New("auto cleaning interval takes none or two words")
	case readDataReady:
		if s.measuring.Ready() {
			return []uint16{1}, 0, nil
		}
		return []uint16{0}, 0, nil
	case startMeasurement:
		if s.measuring.Running() {
			return nil, 0, errors.New("already measuring")
		}
		if len(args) != 1 || args[0] != floatFormat {
			return nil, 0, errors.New("only the float output format (0x0300) is simulated")
		}
		s.measuring.Start(now)
		return nil, startStop, nil
	case stopMeasurement:
		if !s.measuring.Running() {
			return nil, 0, errors.New("not measuring")
		}
		s.measuring.Stop()
		return nil, startStop, nil
	case readMeasuredValues:
		data, ok := s.measuring.Take()
		if !ok {
			return nil, 0, errors.New("no new measured values")
		}
		return data, 0, nil
	case startFanCleaning:
		if !s.measuring.Running() {
			return nil, 0, errors.New("fan cleaning needs measurement mode")
		}
		s.cleanings++
		return nil, 5 * time.Millisecond, nil
	}
	return nil, 0, errors.New("unknown command")
}

// encode is the float-format measurement due at t.
func (s *Sim) encode(t time.Time) []uint16 {
	pm := s.Sample(t).PM
	// Number concentrations and typical size are not part of the World;
	// these follow a plausible urban size distribution.
	vals := []float64{pm[0], pm[1], pm[2], pm[3], pm[0] * 6.5, pm[1] * 7.6, pm[2] * 7.7, pm[3] * 7.7, pm[3] * 7.8, 0.55}
	data := make([]uint16, 0, 2*len(vals))
	for _, v := range vals {
		b := math.Float32bits(float32(math.Max(0, v)))
		data = append(data, uint16(b>>16), uint16(b))
	}
	return data
}

// ascii packs str into n words, NUL-padded.
func ascii(str string, n int) []uint16 {
	b := make([]byte, 2*n)
	copy(b, str)
	w := make([]uint16, n)
	for i := range w {
		w[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return w
}
