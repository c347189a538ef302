package guidance

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// facts is the test's own record of what the model was told about one bay,
// and expected derives the bay's state from it by the rules as written in
// the issue, independently of the model's code.
type facts struct {
	open, fault, seen, occupied bool
	last                        time.Time
	interval                    time.Duration
}

func (f facts) expected(now time.Time) State {
	switch {
	case !f.open, f.fault, !f.seen, now.Sub(f.last) >= 3*f.interval:
		return Unknown
	case f.occupied:
		return Occupied
	}
	return Free
}

// A simulated street: 40 bays in 4 zones with random arrivals and
// departures, sensor faults, halts and reopenings, quiet sensors going
// stale, on the fake clock. At every change the published counts equal the
// bay states behind them, an unknown bay is never counted free, each
// change increases the zone's seq by exactly one, and nothing changes
// unpublished.
func TestStreetProperty(t *testing.T) {
	zones := []string{"north", "south", "east", "west"}
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 12))
			cfg := street(time.Second, 10, zones...)
			bayFacts := map[string]*facts{}
			var names []string
			for _, z := range cfg.Zones {
				for _, b := range z.Bays {
					s := cfg.Sensors[b]
					s.Interval = time.Duration(1+rng.IntN(5)) * time.Second
					cfg.Sensors[b] = s
					bayFacts[b] = &facts{interval: s.Interval}
					names = append(names, b)
				}
			}
			clock := clockwork.NewFakeClockAt(t0)
			m, err := New(cfg, clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			published := map[string]ZoneState{}
			for _, z := range m.Zones() {
				published[z.Zone] = z
			}
			states := map[string]State{}
			for _, b := range m.Bays() {
				states[b.Sensor] = b.State
			}
			kinds := map[string]int{}
			for step := range 4000 {
				clock.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
				now := clock.Now()
				name := names[rng.IntN(len(names))]
				f := bayFacts[name]
				var u Update
				switch r := rng.IntN(100); {
				case r < 4:
					kinds["fault"]++
					f.fault = true
					u = m.Fault(name)
				case r < 7:
					kinds["closed"]++
					f.open, f.seen = false, false
					u = m.Closed(name)
				case r < 20 && !f.open, r < 12:
					kinds["opened"]++
					f.open, f.fault, f.seen = true, false, false
					u = m.Opened(name)
				case r < 30:
					kinds["tick"]++
					u = m.Tick()
				default:
					occ := f.occupied
					if rng.IntN(3) == 0 { // an arrival or a departure
						occ = !occ
					}
					kinds["reading"]++
					if f.open {
						f.seen, f.fault, f.occupied, f.last = true, false, occ, now
					}
					u = m.Reading(name, occ, now)
				}

				// The bays that changed are exactly those whose expected
				// state changed, and the model agrees on every bay.
				changedBays := map[string]bool{}
				for _, b := range u.Bays {
					changedBays[b.Sensor] = true
					if !b.Changed.Equal(now) {
						t.Fatalf("step %d: bay %s changed at %v, not now", step, b.Sensor, b.Changed)
					}
				}
				want := map[string][3]int{}
				for _, b := range m.Bays() {
					exp := bayFacts[b.Sensor].expected(now)
					if b.State != exp {
						t.Fatalf("step %d: bay %s is %s, want %s (%+v)", step, b.Sensor, b.State, exp, *bayFacts[b.Sensor])
					}
					if (exp != states[b.Sensor]) != changedBays[b.Sensor] {
						t.Fatalf("step %d: bay %s went %s → %s; reported as changed: %v", step, b.Sensor, states[b.Sensor], exp, changedBays[b.Sensor])
					}
					states[b.Sensor] = exp
					c := want[b.Zone]
					c[exp]++
					want[b.Zone] = c
				}
				// Every published zone state matches the bays behind it.
				changedZones := map[string]bool{}
				for _, z := range u.Zones {
					changedZones[z.Zone] = true
					c := want[z.Zone]
					if z.Free != c[Free] || z.Occupied != c[Occupied] || z.Unknown != c[Unknown] || z.Total != 10 {
						t.Fatalf("step %d: published %+v, bays say free %d occupied %d unknown %d", step, z, c[Free], c[Occupied], c[Unknown])
					}
					if z.Free+z.Occupied+z.Unknown != z.Total {
						t.Fatalf("step %d: %+v does not add up", step, z)
					}
					if z.Seq != published[z.Zone].Seq+1 || !z.Changed.Equal(now) {
						t.Fatalf("step %d: zone %s seq %d after %d, changed %v", step, z.Zone, z.Seq, published[z.Zone].Seq, z.Changed)
					}
					sign := z.Sign()
					switch {
					case c[Unknown] == 10 && sign != SignUnknown,
						c[Free] == 0 && c[Unknown] < 10 && (sign != SignFull || !z.Lamp()),
						c[Free] > 0 && (sign != fmt.Sprintf("%4d", c[Free]) || z.Lamp()):
						t.Fatalf("step %d: %+v shows %q lamp %v", step, z, sign, z.Lamp())
					}
					published[z.Zone] = z
				}
				// No zone changed without being published.
				for _, z := range m.Zones() {
					if z != published[z.Zone] {
						t.Fatalf("step %d: zone %s is %+v but was last published as %+v (changed in the update: %v)", step, z.Zone, z, published[z.Zone], changedZones[z.Zone])
					}
				}
			}
			for _, k := range []string{"fault", "closed", "opened", "tick", "reading"} {
				if kinds[k] == 0 {
					t.Errorf("no %s event in the run", k)
				}
			}
		})
	}
}

// The agent feeds events from one goroutine per sensor and reads states for
// status at the same time: every state any of them sees adds up.
func TestConcurrentUse(t *testing.T) {
	cfg := street(time.Second, 10, "a", "b")
	clock := clockwork.NewFakeClockAt(t0)
	m, err := New(cfg, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(zs []ZoneState) {
		for _, z := range zs {
			if z.Free+z.Occupied+z.Unknown != z.Total || z.Total != 10 {
				t.Errorf("%+v does not add up", z)
			}
		}
	}
	var wg sync.WaitGroup
	for _, z := range cfg.Zones {
		for _, b := range z.Bays {
			wg.Go(func() {
				check(m.Opened(b).Zones)
				for i := range 200 {
					check(m.Reading(b, i%3 == 0, time.Time{}).Zones)
					if i%50 == 0 {
						check(m.Fault(b).Zones)
					}
				}
			})
		}
	}
	wg.Go(func() {
		for range 200 {
			check(m.Zones())
			check(m.Tick().Zones)
			m.Deadline()
		}
	})
	wg.Wait()
	last := map[string]uint64{}
	for _, z := range m.Zones() {
		last[z.Zone] = z.Seq
	}
	if last["a"] < 100 || last["b"] < 100 {
		t.Errorf("seqs %v: the events did not change the zones", last)
	}
}
