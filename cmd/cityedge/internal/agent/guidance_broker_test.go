package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/drivers/ht16k33/ht16k33sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/uplink"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jonboulle/clockwork"
	"github.com/pelletier/go-toml/v2"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
)

// The guidance against a real mosquitto, through the agent's own wiring:
// gpio-presence drivers on simulated pins, the sampler, the sink (buffer),
// the forwarder and the uplink, the guidance and the signs on simulated
// HT16K33s, on the real clock.

const rigPrefix = "cityedge/test/gw-street"

// rigHardware holds the simulated pins and sign chips.
type rigHardware struct {
	pins  map[string]*sim.Pin
	bus   *sim.Bus
	chips map[string]*ht16k33sim.Chip // by zone
}

func (h *rigHardware) Target(s config.SensorConfig) (catalog.Target, error) {
	return catalog.Target{Sensor: s.Name, Pin: h.pins[s.Pin]}, nil
}
func (h *rigHardware) Close()                                     {}
func (h *rigHardware) signBus(config.SignConfig) (i2c.Bus, error) { return h.bus, nil }
func (h *rigHardware) lampPin(config.SignConfig) (gpio.PinOut, error) {
	return nil, errors.New("no lamp here")
}

type rig struct {
	a       *agent
	hw      *rigHardware
	cfg     *config.Config
	offline atomic.Bool // TLSConfig refuses: the network is down
	sunk    chan sunk   // readings as they reach the sink (after debounce)
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// newRig runs zones × bays gpio-presence bays (debounce 1 ms, active low,
// all free at start) with one display per zone against broker b.
func newRig(tb testing.TB, b *testbroker.Broker, zones, bays int) *rig {
	tb.Helper()
	cfg := streetConfig(tb, zones, bays)
	cfg.Signs = slices.DeleteFunc(cfg.Signs, func(s config.SignConfig) bool { return s.Driver != config.SignHT16K33 })
	cfg.Uplink.TopicPrefix = rigPrefix
	r := &rig{cfg: cfg, hw: &rigHardware{pins: map[string]*sim.Pin{}, bus: sim.NewBus("sim-i2c1"), chips: map[string]*ht16k33sim.Chip{}},
		sunk: make(chan sunk, 1024)}
	drv, _ := catalog.Lookup("gpio-presence")
	for i := range cfg.Sensors {
		s := &cfg.Sensors[i]
		s.Interval = time.Hour // bays stay known for the whole test
		s.Options = drv.Options()
		if err := toml.Unmarshal([]byte(`debounce = "1ms"`), s.Options); err != nil {
			tb.Fatal(err)
		}
		r.hw.pins[s.Pin] = sim.NewPin(s.Pin, gpio.High) // active low: free
	}
	for _, s := range cfg.Signs {
		c := ht16k33sim.New(nil)
		r.hw.chips[s.Zone] = c
		r.hw.bus.Attach(s.Address, c)
	}
	log := slog.New(slog.DiscardHandler)
	clock := clockwork.NewRealClock()
	q, err := buffer.Open(filepath.Join(cfg.Agent.StateDir, "buffer.db"), buffer.Options{MaxBytes: 16 << 20, CommitInterval: 250 * time.Millisecond, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	a := &agent{cfg: cfg, log: log, clock: clock, q: q}
	a.fwd = newForwarder(q, cfg.Agent.ID, 100, 100*time.Millisecond, clock, log)
	tc := b.ClientTLS(tb)
	a.up, err = uplink.New(uplink.Config{
		Brokers: []string{b.URL}, ClientID: cfg.Agent.ID, TopicPrefix: rigPrefix,
		TLSConfig: func() (*tls.Config, error) {
			if r.offline.Load() {
				return nil, errors.New("test: network down")
			}
			return tc, nil
		},
		ConnectTimeout: 2 * time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		ReconnectSpread: 10 * time.Millisecond, StopTimeout: time.Second, Logger: log,
		Status: func(online bool) []byte { return []byte(fmt.Sprintf(`{"online":%t}`, online)) },
	}, a.fwd)
	if err != nil {
		tb.Fatal(err)
	}
	r.a = a
	events, stopGuidance, err := a.startGuidance(r.hw)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	drainHandoff := a.startHandoff()
	sink := func(rd drivers.Reading, class buffer.Class) {
		r.sunk <- sunk{rd.Sensor, time.Now()}
		a.handOff(rd, class)
	}
	for _, s := range cfg.Sensors {
		sr := &sensorRunner{cfg: s, drv: drv, hw: r.hw, clock: clock, log: log, events: events}
		r.wg.Add(1)
		go func() { defer r.wg.Done(); sr.run(ctx, sink) }()
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); _ = a.up.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		r.wg.Wait()
		drainHandoff()
		stopGuidance()
		q.Close()
	})
	return r
}

// sunk is a reading reaching the sink.
type sunk struct {
	sensor string
	at     time.Time
}

// zoneMsg decodes a zone message.
func zoneMsg(tb testing.TB, m testbroker.Message) guidance.ZoneState {
	var z guidance.ZoneState
	if err := json.Unmarshal(m.Payload, &z); err != nil {
		tb.Fatalf("zone message on %s: %v", m.Topic, err)
	}
	return z
}

// awaitZones reads ch until every zone's newest message equals the model's
// state, and returns when that happened.
func (r *rig) awaitZones(tb testing.TB, ch <-chan testbroker.Message, within time.Duration) time.Time {
	tb.Helper()
	got := map[string]string{}
	deadline := time.After(within)
	for {
		current := true
		for _, z := range r.a.guide.model.Zones() {
			want, _ := json.Marshal(z)
			if got[z.Zone] != string(want) {
				current = false
			}
		}
		if current {
			return time.Now()
		}
		select {
		case m := <-ch:
			if strings.HasPrefix(m.Topic, rigPrefix+"/zones/") {
				got[strings.TrimPrefix(m.Topic, rigPrefix+"/zones/")] = string(m.Payload)
			}
		case <-deadline:
			tb.Fatalf("zone messages at the broker %v are not the current states %+v", got, r.a.guide.model.Zones())
		}
	}
}

// TestGuidanceBrokerOutage: zone states change while the broker is down
// and lost its retained messages (killed); once the agent reconnects, the
// broker holds every zone's current state again, as retained messages, and
// the signs never stopped following the bays.
func TestGuidanceBrokerOutage(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	zones := b.Subscribe(t, rigPrefix+"/zones/#")
	r := newRig(t, b, 4, 10)
	r.awaitZones(t, zones, 20*time.Second)

	r.offline.Store(true)
	b.Kill() // retained messages lost
	waitUntil(t, func() bool { return !r.a.up.State().Connected }, func() string { return "still connected after the broker died" })
	for i, name := range []string{"GPIObay-1-01", "GPIObay-2-03", "GPIObay-2-04", "GPIObay-4-10"} {
		r.hw.pins[name].Set(gpio.Low) // arrivals during the outage
		_ = i
	}
	for range 4 {
		<-r.sunk
	}
	for _, z := range r.cfg.Zones {
		st, _ := r.a.guide.model.Zone(z.Name)
		waitShows(t, r.hw.chips[z.Name], st.Sign()) // signs do not wait for the uplink
	}
	b.Restart()
	// The subscriber is back before the agent may connect, so that it sees
	// the agent's messages as they arrive.
	awaitSubscriber(t, b, zones)
	sessions := r.a.up.State().Sessions
	r.offline.Store(false)
	current := r.awaitZones(t, zones, 20*time.Second)
	st := r.a.up.State()
	if st.Sessions <= sessions || st.ConnectedSince.IsZero() {
		t.Fatalf("no new session: %+v", st)
	}
	lag := current.Sub(st.ConnectedSince)
	t.Logf("zone states current %v after the reconnect", lag)
	// The figure is BenchmarkGuidanceReconnect's; here a bound a loaded
	// shared machine holds.
	if lag > 2*time.Second {
		t.Errorf("zone states current only %v after the reconnect", lag)
	}
	// A subscriber that comes now gets them as retained messages.
	late := b.Subscribe(t, rigPrefix+"/zones/#")
	r.awaitZones(t, late, 10*time.Second)
}

// awaitSubscriber returns once the subscriber of ch is subscribed again
// after a broker restart: it publishes probes until one arrives.
func awaitSubscriber(tb testing.TB, b *testbroker.Broker, ch <-chan testbroker.Message) {
	tb.Helper()
	probe := rigPrefix + "/zones/probe"
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		publishOnce(tb, b, probe)
		wait := time.After(200 * time.Millisecond)
	read:
		for {
			select {
			case m := <-ch:
				if m.Topic == probe {
					return
				}
			case <-wait:
				break read
			}
		}
	}
	tb.Fatal("the subscriber did not come back after the broker restart")
}

// publishOnce publishes one message to topic with the PKI's client
// certificate under a throwaway client id.
func publishOnce(tb testing.TB, b *testbroker.Broker, topic string) {
	tb.Helper()
	opts := mqtt.NewClientOptions().AddBroker(b.URL).SetClientID(fmt.Sprintf("probe-%d", time.Now().UnixNano())).
		SetTLSConfig(b.ClientTLS(tb)).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("probe connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, "probe"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("probe publish: %v", tok.Error())
	}
}

// BenchmarkGuidanceLatency: from a bay's reading leaving the debounce (the
// simulated pin's edge, as the sampler hands it to the sink) to (a) the
// zone's retained message arriving at a real mosquitto's subscriber and (b)
// the sign's display RAM write, through the agent's wiring. p50 and p99 in
// ms; the targets are p99 ≤ 100 ms for both.
func BenchmarkGuidanceLatency(b *testing.B) {
	br := testbroker.Start(b, testbroker.Options{})
	zones := br.Subscribe(b, rigPrefix+"/zones/#")
	r := newRig(b, br, 4, 10)
	r.awaitZones(b, zones, 20*time.Second)
	for len(r.sunk) > 0 {
		<-r.sunk
	}
	chip := r.hw.chips["z1"]
	ram := make(chan string, 16)
	var ramAt atomic.Int64
	chip.OnRAMWrite(func(d ht16k33sim.Display) { ramAt.Store(time.Now().UnixNano()); ram <- d.Text })
	pin := r.hw.pins["GPIObay-1-01"]
	var toZone, toSign []time.Duration
	b.ResetTimer()
	for i := range b.N {
		occupied := i%2 == 0
		want := "  10"
		level := gpio.High
		if occupied {
			want, level = "   9", gpio.Low
		}
		pin.Set(level)
		t0 := (<-r.sunk).at
		for text := range ram {
			if text == want {
				toSign = append(toSign, time.Duration(ramAt.Load()-t0.UnixNano()))
				break
			}
		}
		for m := range zones {
			if m.Topic != rigPrefix+"/zones/z1" {
				continue
			}
			if z := zoneMsg(b, m); z.Occupied == map[bool]int{true: 1, false: 0}[occupied] {
				toZone = append(toZone, time.Since(t0))
				break
			}
		}
	}
	b.StopTimer()
	reportPercentiles(b, "zone", toZone)
	reportPercentiles(b, "sign", toSign)
}

// BenchmarkGuidanceReconnect: after a broker outage in which the broker lost
// its retained messages and the zones changed, the time from the agent's
// new session to every zone's current state at a subscriber (target: within
// 100 ms).
func BenchmarkGuidanceReconnect(b *testing.B) {
	br := testbroker.Start(b, testbroker.Options{})
	zones := br.Subscribe(b, rigPrefix+"/zones/#")
	r := newRig(b, br, 4, 10)
	r.awaitZones(b, zones, 20*time.Second)
	var lags []time.Duration
	for i := range b.N {
		r.offline.Store(true)
		br.Kill()
		for !func() bool { return !r.a.up.State().Connected }() {
			time.Sleep(time.Millisecond)
		}
		pin := r.hw.pins[fmt.Sprintf("GPIObay-%d-01", i%4+1)]
		pin.Set(!pin.Read())
		<-r.sunk
		br.Restart()
		awaitSubscriber(b, br, zones)
		r.offline.Store(false)
		current := r.awaitZones(b, zones, 20*time.Second)
		lags = append(lags, current.Sub(r.a.up.State().ConnectedSince))
	}
	reportPercentiles(b, "current", lags)
}

func reportPercentiles(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / 1e6
	}
	b.ReportMetric(at(0.50), name+"-p50-ms")
	b.ReportMetric(at(0.99), name+"-p99-ms")
}
