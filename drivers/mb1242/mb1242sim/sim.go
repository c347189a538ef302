// Package mb1242sim simulates a MaxBotix MB1242 (I2CXL-MaxSonar-EZ4) over a
// parking bay for tests and `cityedge --simulate`, written from the datasheet
// on its own so that a mistake in the mb1242 driver is not mirrored.
package mb1242sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// The range command and the reported range (datasheet: "take a range
// reading" 0x51 = 81; readings span 20 to 765 cm).
const (
	cmdRange = 0x51
	minCM    = 20
	maxCM    = 765
)

// Sim is a simulated I2CXL-MaxSonar mounted above a parking bay: the ground
// is 2.6 m away, a car's roof 0.8 to 1.3 m (a new car, a new height), with
// centimetre noise. Like the real sensor it ignores the bus (no acknowledge)
// for simRangeTime after a range command. It implements sim.Chip.
type Sim struct {
	mu     sync.Mutex
	bay    *sim.Bay
	rnd    *rand.Rand
	now    func() time.Time
	busy   time.Time // ranging until then
	cm     uint16    // last reading
	roof   float64   // current car's roof distance, m
	hadCar bool
}

var _ sim.Chip = (*Sim)(nil)

const (
	simGround    = 2.6
	simRangeTime = 70 * time.Millisecond // a full-range ping, 15 Hz
)

// NewSim returns a simulated ranger above bay.
func NewSim(bay *sim.Bay, seed uint64) *Sim {
	return &Sim{bay: bay, rnd: rand.New(rand.NewPCG(seed, seed^0xecc0)), now: time.Now}
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
	if now.Before(s.busy) {
		return fmt.Errorf("mb1242 sim: ranging: %w", sim.ErrNACK)
	}
	switch {
	case len(w) == 0:
	case len(w) == 1 && w[0] == cmdRange:
		s.cm = s.measure(now)
		s.busy = now.Add(simRangeTime)
	case len(w) == 3 && w[0] == 0xAA && w[1] == 0xA5:
		return errors.New("mb1242 sim: address change is not simulated")
	default:
		return fmt.Errorf("mb1242 sim: unknown command % x", w)
	}
	if len(r) > 2 {
		return fmt.Errorf("mb1242 sim: read of %d bytes; the sensor sends 2", len(r))
	}
	// Before the first range command the real sensor sends two "part info"
	// bytes; zeros stand in for them.
	v := [2]byte{byte(s.cm >> 8), byte(s.cm)}
	copy(r, v[:])
	return nil
}

func (s *Sim) measure(now time.Time) uint16 {
	d := simGround
	occ := s.bay != nil && s.bay.Occupied(now)
	if occ {
		if !s.hadCar {
			s.roof = 0.8 + 0.5*s.rnd.Float64()
		}
		d = s.roof
	}
	s.hadCar = occ
	cm := math.Round(d*100 + s.rnd.NormFloat64())
	return uint16(max(minCM, min(maxCM, cm)))
}
