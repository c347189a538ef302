package sim

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// Weather is the street environment at one instant, in plain SI-ish units
// that simulated chips convert into their raw register values.
type Weather struct {
	TempC      float64    // air temperature, °C
	RH         float64    // relative humidity, %
	PressurePa float64    // barometric pressure, Pa
	CO2        float64    // ppm
	PM         [4]float64 // PM1, PM2.5, PM4, PM10 mass concentration, µg/m³
	Lux        float64    // illuminance, lx
	NoiseDBA   float64    // street noise, dB(A)
}

// World is a slowly changing street: a daily temperature and light cycle,
// weather drift, traffic-driven CO2, particulates and noise. It is safe for
// concurrent use. Values are plausible, not a climate model.
type World struct {
	mu  sync.Mutex
	rnd *rand.Rand
	// Slow random walks, so that two readings a few seconds apart differ a
	// little and readings an hour apart differ a lot.
	tempDrift, rhDrift, pDrift, trafficDrift float64
	last                                     time.Time
}

// NewWorld returns a World whose noise is seeded by seed.
func NewWorld(seed uint64) *World {
	return &World{rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Seed derives a stable seed from a sensor name, so each simulated sensor has
// its own but repeatable noise.
func Seed(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// At returns the weather at t.
func (w *World) At(t time.Time) Weather {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !t.Before(w.last) {
		steps := 1.0
		if !w.last.IsZero() {
			steps = math.Min(t.Sub(w.last).Seconds(), 3600)
		}
		k := math.Sqrt(steps)
		w.tempDrift = clamp(w.tempDrift+w.rnd.NormFloat64()*0.02*k, -3, 3)
		w.rhDrift = clamp(w.rhDrift+w.rnd.NormFloat64()*0.05*k, -10, 10)
		w.pDrift = clamp(w.pDrift+w.rnd.NormFloat64()*2*k, -1500, 1500)
		w.trafficDrift = clamp(w.trafficDrift+w.rnd.NormFloat64()*0.01*k, -0.3, 0.3)
		w.last = t
	}
	// Hours since local midnight in UTC is good enough for a simulation.
	h := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
	day := math.Sin((h - 9) / 24 * 2 * math.Pi)       // peaks mid-afternoon
	traffic := 0.5 + 0.5*math.Sin((h-6)/12*2*math.Pi) // two rush hours
	traffic = clamp(traffic+w.trafficDrift, 0, 1)
	noise := func(s float64) float64 { return w.rnd.NormFloat64() * s }

	wx := Weather{
		TempC:      16 + 6*day + w.tempDrift + noise(0.05),
		RH:         clamp(60-15*day+w.rhDrift+noise(0.3), 5, 99),
		PressurePa: 101325 + w.pDrift + noise(3),
		CO2:        430 + 350*traffic + noise(5),
		Lux:        math.Max(0, 30000*day) + 20 + math.Abs(noise(2)),
		NoiseDBA:   48 + 22*traffic + noise(1.5),
	}
	pm25 := 6 + 28*traffic + math.Abs(noise(1))
	wx.PM = [4]float64{pm25 * 0.7, pm25, pm25 * 1.15, pm25 * 1.4}
	return wx
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// Bay is a simulated parking bay: cars arrive and leave at random, with a mean
// time between changes given at creation.
type Bay struct {
	mu       sync.Mutex
	rnd      *rand.Rand
	mean     time.Duration
	occupied bool
	next     time.Time
}

// NewBay returns an empty bay that changes state on average every mean.
func NewBay(seed uint64, mean time.Duration) *Bay {
	return &Bay{rnd: rand.New(rand.NewPCG(seed, ^seed)), mean: mean}
}

// Occupied reports whether a car stands in the bay at t (t must not go back).
func (b *Bay) Occupied(t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next.IsZero() {
		b.next = t.Add(b.dwell())
	}
	for !t.Before(b.next) {
		b.occupied = !b.occupied
		b.next = b.next.Add(b.dwell())
	}
	return b.occupied
}

// NextChange returns when the bay next changes state.
func (b *Bay) NextChange(now time.Time) time.Time {
	b.Occupied(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next
}

func (b *Bay) dwell() time.Duration {
	// Exponential dwell, at least a second so debouncing has something to do.
	d := time.Duration(b.rnd.ExpFloat64() * float64(b.mean))
	return max(d, time.Second)
}

// DrivePin makes pin follow bay until ctx is done: active is the level the
// detector drives while a car is present. Each change comes with a short
// contact bounce, so the driver's debouncing is exercised too.
func DrivePin(ctx context.Context, pin *Pin, bay *Bay, active gpio.Level) {
	level := func(occ bool) gpio.Level {
		if occ {
			return active
		}
		return !active
	}
	pin.Set(level(bay.Occupied(time.Now())))
	for {
		next := bay.NextChange(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		occ := bay.Occupied(time.Now())
		for i := 0; i < 3; i++ { // relay contact bounce, a few ms
			pin.Set(level(!occ))
			time.Sleep(2 * time.Millisecond)
			pin.Set(level(occ))
			time.Sleep(3 * time.Millisecond)
		}
	}
}
