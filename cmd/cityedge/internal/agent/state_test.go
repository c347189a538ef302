package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/drivers/qmc5883l/qmc5883lsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
)

// busHardware puts every sensor on one bus.
type busHardware struct {
	bus  *sim.Bus
	name string
}

func (h busHardware) Target(s config.SensorConfig) (catalog.Target, error) {
	return catalog.Target{Sensor: s.Name, Bus: h.bus, BusName: h.name, Addr: s.Address}, nil
}
func (busHardware) Close() {}

// bayWith finds a simulated bay whose first three stays fit the test: empty
// for d[0] (learning), a car for d[1] (a restart in between), empty for
// d[2] at least. A bay's stays depend only on its seed.
func bayWith(t *testing.T, mean time.Duration, ok func(d [3]time.Duration) bool) (uint64, [3]time.Duration) {
	t.Helper()
	t0 := time.Unix(1e9, 0)
	for seed := uint64(1); seed < 10000; seed++ {
		b := sim.NewBay(seed, mean)
		var d [3]time.Duration
		at := t0
		for i := range d {
			next := b.NextChange(at)
			d[i], at = next.Sub(at), next
		}
		if ok(d) {
			return seed, d
		}
	}
	t.Fatal("no bay fits")
	return 0, [3]time.Duration{}
}

// TestDetectorStateSurvivesRestart: a QMC5883L bay detector learns the empty
// bay, a car parks, the agent stops and starts again (a new process: the
// catalog's in-process detector cache cannot help, the sensor sits on a bus
// of another name), then the car leaves. The detector's state comes back
// from the buffer file, so the restarted agent reports the bay occupied and
// then exactly one change, to free. Without it, the restarted detector
// learns the parked car as the empty bay and reports "occupied" when it
// leaves.
//
// The simulated chip and bay run in real time (a few seconds); the
// sampler's schedule runs on a fake clock.
func TestDetectorStateSurvivesRestart(t *testing.T) {
	const mean = 2 * time.Second
	seed, stay := bayWith(t, mean, func(d [3]time.Duration) bool {
		return d[0] >= 800*time.Millisecond && d[0] <= 1500*time.Millisecond && d[1] >= 3*time.Second && d[2] >= 3*time.Second
	})
	bay := sim.NewBay(seed, mean)
	start := time.Now()
	arrives := bay.NextChange(start)
	leaves := arrives.Add(stay[1])
	t.Logf("bay %d: empty until +%v, a car until +%v, then empty for %v", seed, stay[0], stay[0]+stay[1], stay[2])

	cfg, err := config.Parse("test.toml", []byte(`[agent]
id = "gw-test"
[uplink]
brokers = ["mqtts://broker.example:8883"]
ca_file = "ca.pem"
cert_file = "c.pem"
key_file = "c.key"
[[sensors]]
name = "bay-7"
driver = "qmc5883l"
interval = "1s"
learn_samples = 3
drift_tau = "0s"
`))
	if err != nil {
		t.Fatal(err)
	}
	drv, _ := catalog.Lookup("qmc5883l")
	path := filepath.Join(t.TempDir(), "buffer.db")
	log := slog.New(slog.DiscardHandler)

	// run samples with a fresh buffer handle, bus and runner until done
	// says so, and returns the occupancy decisions it reported.
	run := func(busName string, done func(now time.Time, occ []bool) bool) []bool {
		clk := clockwork.NewFakeClock()
		q, err := buffer.Open(path, buffer.Options{MaxBytes: 1 << 20, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		bus := sim.NewBus(busName)
		bus.Attach(cfg.Sensors[0].Address, qmc5883lsim.NewSim(bay, 11))
		r := &sensorRunner{cfg: cfg.Sensors[0], drv: drv, hw: busHardware{bus, busName}, clock: clk, log: log, keep: q}
		got := make(chan drivers.Reading, 16)
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() {
			r.run(ctx, func(rd drivers.Reading, _ buffer.Class) { got <- rd })
			close(stopped)
		}()
		var occ []bool
		for n := 0; ; n++ {
			select {
			case rd := <-got:
				for _, v := range rd.Values {
					if v.Quantity == drivers.Occupied {
						occ = append(occ, v.Bool)
					}
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no reading %d", n)
			}
			if done(time.Now(), occ) || n > 200 {
				break
			}
			time.Sleep(100 * time.Millisecond) // the chip and the bay live in real time
			clk.Advance(cfg.Sensors[0].Interval)
		}
		cancel()
		<-stopped
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		return occ
	}

	first := run("sim-i2c1", func(now time.Time, occ []bool) bool {
		if now.After(leaves.Add(-1500 * time.Millisecond)) {
			t.Fatalf("the car was not detected before the restart: %v", occ)
		}
		return len(occ) > 0 && occ[len(occ)-1]
	})
	if now := time.Now(); now.Before(arrives) || !now.Before(leaves) {
		t.Fatalf("restarting at +%v, outside the car's stay", now.Sub(start))
	}
	second := run("sim-i2c1-after-restart", func(now time.Time, occ []bool) bool {
		return now.After(leaves.Add(time.Second)) && len(occ) > 0 && !occ[len(occ)-1] || now.After(leaves.Add(stay[2]-time.Second))
	})
	t.Logf("before the restart: %v; after: %v", first, second)
	if len(second) == 0 || !second[0] {
		t.Fatalf("after the restart, with the car still parked, the bay reads %v", second)
	}
	changes := 0
	prev := true
	for _, o := range second {
		if o != prev {
			changes++
		}
		prev = o
	}
	if changes != 1 || prev {
		t.Fatalf("after the restart the bay reported %v: want occupied, then exactly one change to free", second)
	}
}
