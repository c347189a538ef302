// Package ads1115sim simulates a TI ADS1115 analog-to-digital converter at
// the register level for tests and `cityedge --simulate`, written from the
// datasheet (SBAS444) on its own so that a mistake in the ads1115 driver is
// not mirrored.
package ads1115sim

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// Registers and Config register fields (datasheet section 8.6).
const (
	regConversion = 0x00
	regConfig     = 0x01
	cfgOS         = 1 << 15
	cfgSingleShot = 1 << 8
)

// dataRates are the DR field's samples per second (table 8).
var dataRates = [...]int{8, 16, 32, 64, 128, 250, 475, 860}

// fullScale is the PGA field's full-scale voltage (table 3); 110b and 111b
// are ±0.256 V too.
var fullScale = [...]float64{6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256}

// Sim is a simulated ADS1115: four registers behind an address pointer, and
// single-shot conversions that take one data-rate period, during which OS
// reads 0. Input voltages come from a function, so a scenario can put any
// analog sensor behind it. It implements sim.Chip.
type Sim struct {
	mu     sync.Mutex
	input  func(ain int, t time.Time) float64 // volts against GND
	now    func() time.Time
	ptr    byte
	conv   int16
	config uint16
	lo, hi uint16
	busy   time.Time // converting until then
	result int16
}

var _ sim.Chip = (*Sim)(nil)

// NewSim returns a simulated converter in its reset state whose inputs read
// input(ain, t) volts.
func NewSim(input func(ain int, t time.Time) float64) *Sim {
	return &Sim{input: input, now: time.Now, config: 0x8583, lo: 0x8000, hi: 0x7FFF}
}

// SetClock makes the simulation read its time from c, such as a test's fake
// clock shared with the driver; the default is the real clock. Call it
// before the first transaction.
func (s *Sim) SetClock(c clockwork.Clock) { s.now = c.Now }

// Tx implements sim.Chip: a one-byte write sets the address pointer, a
// three-byte write also writes the register; reads return the register the
// pointer selects, high byte first.
func (s *Sim) Tx(w, r []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !s.busy.IsZero() && !now.Before(s.busy) {
		s.conv, s.busy = s.result, time.Time{}
	}
	switch len(w) {
	case 0:
	case 1, 3:
		if w[0] > 3 {
			return fmt.Errorf("ads1115 sim: address pointer %#02x: only 0 to 3 exist", w[0])
		}
		s.ptr = w[0]
		if len(w) == 3 {
			if err := s.write(now, uint16(w[1])<<8|uint16(w[2])); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("ads1115 sim: write of %d bytes: want the pointer, or the pointer and two register bytes", len(w))
	}
	if len(r) > 2 {
		return fmt.Errorf("ads1115 sim: read of %d bytes; registers are 2 bytes", len(r))
	}
	var v uint16
	switch s.ptr {
	case regConversion:
		if s.config&cfgSingleShot == 0 { // continuous: always the input now
			s.conv = s.convert(now)
		}
		v = uint16(s.conv)
	case regConfig:
		v = s.config &^ cfgOS
		if s.busy.IsZero() {
			v |= cfgOS
		}
	case 2:
		v = s.lo
	case 3:
		v = s.hi
	}
	b := [2]byte{byte(v >> 8), byte(v)}
	copy(r, b[:])
	return nil
}

func (s *Sim) write(now time.Time, v uint16) error {
	switch s.ptr {
	case regConversion:
		return fmt.Errorf("ads1115 sim: the conversion register is read-only")
	case regConfig:
		start := v&cfgOS != 0 && v&cfgSingleShot != 0 && s.busy.IsZero()
		s.config = v
		if start {
			s.busy = now.Add(time.Second / time.Duration(dataRates[(v>>5)&7]))
			s.result = s.convert(now)
		}
	case 2:
		s.lo = v
	case 3:
		s.hi = v
	}
	return nil
}

// convert samples the input the config selects and codes it at its gain.
func (s *Sim) convert(now time.Time) int16 {
	mux := int(s.config>>12) & 7
	volts := func(ain int) float64 {
		if s.input == nil {
			return 0
		}
		return s.input(ain, now)
	}
	var v float64
	switch mux {
	case 0:
		v = volts(0) - volts(1)
	case 1:
		v = volts(0) - volts(3)
	case 2:
		v = volts(1) - volts(3)
	case 3:
		v = volts(2) - volts(3)
	default:
		v = volts(mux - 4)
	}
	fs := fullScale[(s.config>>9)&7]
	code := math.Round(v / fs * 32768)
	return int16(math.Max(-32768, math.Min(32767, code)))
}
