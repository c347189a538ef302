// Package qmc5883lsim simulates a QST QMC5883L magnetometer under a parking
// bay for tests and `cityedge --simulate`, written from the datasheet on its
// own so that a mistake in the qmc5883l driver is not mirrored.
package qmc5883lsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// Registers and bits (datasheet section 9.1, table 13).
const (
	regDataX   = 0x00
	regStatus  = 0x06
	regCtrl1   = 0x09 // OSR[7:6] RNG[5:4] ODR[3:2] MODE[1:0]
	regCtrl2   = 0x0A
	regSetRst  = 0x0B
	regChipID  = 0x0D
	chipID     = 0xFF
	statusDRDY = 0x01
	statusOVL  = 0x02
	softReset  = 0x80
	modeCont   = 0x01
)

// odrPeriod is the sample period of each ODR setting (10, 50, 100, 200 Hz).
var odrPeriod = [...]time.Duration{100 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond, 5 * time.Millisecond}

// lsbPerGauss is the sensitivity of each RNG setting: 12000 LSB/G at ±2 G,
// 3000 at ±8 G.
func lsbPerGauss(rng byte) int64 {
	if rng == 1 {
		return 3000
	}
	return 12000
}

// Sim is a simulated QMC5883L under a parking bay: it holds the chip's
// registers and, in continuous mode, produces a sample every output-data
// period: the earth's field at a mid-European site, plus the distortion of
// the car standing in the bay (a new one for each car), plus noise, encoded
// at the configured range. It implements sim.Chip.
type Sim struct {
	mu   sync.Mutex
	regs [0x0E]byte
	ptr  byte
	bay  *sim.Bay
	rnd  *rand.Rand
	now  func() time.Time

	last   time.Time  // when the last sample was produced
	car    [3]float64 // µT, the current car's distortion
	hadCar bool
	truth  [3]float64 // µT, the field of the last sample, for tests
}

var _ sim.Chip = (*Sim)(nil)

// earth is the empty bay's field in µT: about 48 µT total with a 63°
// inclination, the chip mounted flat with X pointing north.
var earth = [3]float64{21.5, 0.8, 42.6}

// NewSim returns a simulated chip in its power-on state, watching bay.
func NewSim(bay *sim.Bay, seed uint64) *Sim {
	s := &Sim{bay: bay, rnd: rand.New(rand.NewPCG(seed, seed^0x5eed)), now: time.Now}
	s.reset()
	return s
}

func (s *Sim) reset() {
	s.regs = [0x0E]byte{}
	s.regs[regChipID] = chipID
}

// Truth returns the field of the last sample before encoding, in µT.
func (s *Sim) Truth() [3]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.truth
}

// SetCar sets the distortion of the car now standing in the bay, in µT,
// instead of a random one (a magnet on the lid, in a test).
func (s *Sim) SetCar(distortion [3]float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.car, s.hadCar = distortion, true
}

// SetClock makes the simulation read its time from c, such as a test's fake
// clock shared with the driver; the default is the real clock. Call it
// before the first transaction.
func (s *Sim) SetClock(c clockwork.Clock) { s.now = c.Now }

// Tx implements sim.Chip: a write sets the register pointer and writes the
// bytes after it; a read returns registers from the pointer on.
func (s *Sim) Tx(w, r []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(w) > 0 {
		if w[0] >= byte(len(s.regs)) {
			return fmt.Errorf("qmc5883l sim: no register %#02x", w[0])
		}
		s.ptr = w[0]
		for _, b := range w[1:] {
			if err := s.write(s.ptr, b); err != nil {
				return err
			}
			s.ptr++
		}
	}
	if len(r) > 0 {
		// New data lands between transactions, so one burst is consistent.
		s.sample()
	}
	for i := range r {
		if s.ptr >= byte(len(s.regs)) {
			return fmt.Errorf("qmc5883l sim: read past register %#02x", len(s.regs)-1)
		}
		r[i] = s.regs[s.ptr]
		if s.ptr <= regDataX+5 {
			s.regs[regStatus] &^= statusDRDY | 0x04 // reading data clears DRDY and DOR
		}
		s.ptr++
		if s.ptr == regStatus+1 && s.regs[regCtrl2]&0x40 != 0 {
			s.ptr = regDataX // pointer roll-over enabled
		}
	}
	return nil
}

func (s *Sim) write(reg, b byte) error {
	switch reg {
	case regCtrl1:
		if s.regs[regCtrl1]&3 != modeCont && b&3 == modeCont {
			s.last = s.now() // the first sample comes one period after the start
		}
		if b&3 > modeCont {
			return fmt.Errorf("qmc5883l sim: reserved mode %#02x in control 1", b&3)
		}
		s.regs[reg] = b
	case regCtrl2:
		if b&softReset != 0 {
			s.reset()
			return nil
		}
		s.regs[reg] = b
	case regSetRst:
		s.regs[reg] = b
	default:
		return fmt.Errorf("qmc5883l sim: register %#02x is read-only", reg)
	}
	return nil
}

// sample produces the next measurement if one is due.
func (s *Sim) sample() {
	ctrl := s.regs[regCtrl1]
	if ctrl&3 != modeCont {
		return
	}
	now := s.now()
	period := odrPeriod[(ctrl>>2)&3]
	if now.Sub(s.last) < period {
		return
	}
	s.last = now
	occ := s.bay != nil && s.bay.Occupied(now)
	if occ && !s.hadCar {
		// A new car: its distortion is mostly vertical (the steel body
		// above the sensor) with a random horizontal part, 25 to 90 µT.
		mag := 25 + 65*s.rnd.Float64()
		dir := [3]float64{s.rnd.NormFloat64() * 0.5, s.rnd.NormFloat64() * 0.5, 1}
		n := math.Sqrt(dir[0]*dir[0] + dir[1]*dir[1] + dir[2]*dir[2])
		for i := range dir {
			s.car[i] = mag * dir[i] / n
		}
	}
	s.hadCar = occ
	// Slow drift of a few tenths of a µT over hours (temperature).
	drift := 0.4 * math.Sin(float64(now.Unix())/(3*3600)*2*math.Pi)
	lsbPerUT := float64(lsbPerGauss((ctrl>>4)&3)) / 100
	var raw [3]int64
	over := false
	for i := range raw {
		f := earth[i] + drift + s.rnd.NormFloat64()*0.15
		if occ {
			f += s.car[i]
		}
		s.truth[i] = f
		raw[i] = int64(math.Round(f * lsbPerUT))
		if raw[i] > math.MaxInt16 || raw[i] < math.MinInt16 {
			// The output saturates and OVL is set.
			raw[i] = max(math.MinInt16, min(math.MaxInt16, raw[i]))
			over = true
		}
	}
	status := byte(statusDRDY)
	if over {
		status |= statusOVL
	}
	for i, v := range raw {
		u := uint16(int16(v))
		s.regs[regDataX+2*i] = byte(u)
		s.regs[regDataX+2*i+1] = byte(u >> 8)
	}
	s.regs[regStatus] = status
}
