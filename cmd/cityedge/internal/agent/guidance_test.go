package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/gpiolamp/gpiolampsim"
	"github.com/cityedge/cityedge/drivers/ht16k33/ht16k33sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
)

// fakeUplink records the retained side messages, newest per topic.
type fakeUplink struct {
	mu       sync.Mutex
	retained map[string][]byte
	onSet    func(suffix string, payload []byte)
	sets     int
}

func (f *fakeUplink) SetRetained(suffix string, payload []byte) {
	f.mu.Lock()
	if f.retained == nil {
		f.retained = map[string][]byte{}
	}
	f.retained[suffix] = payload
	f.sets++
	on := f.onSet
	f.mu.Unlock()
	if on != nil {
		on(suffix, payload)
	}
}

func (f *fakeUplink) get(suffix string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.retained[suffix]
}

// streetConfig is a street of zones × bays gpio-presence bays (interval
// 10 s), each with a location, and one display per zone plus a lamp on the
// first zone.
func streetConfig(t testing.TB, zones, bays int) *config.Config {
	cfg := &config.Config{}
	cfg.Agent.ID, cfg.Agent.StateDir = "gw-street", t.TempDir()
	cfg.Guidance.PublishBays, cfg.Guidance.SmartDataModels = true, true
	for z := range zones {
		zone := guidance.Zone{Name: fmt.Sprintf("z%d", z+1)}
		for b := range bays {
			name := fmt.Sprintf("bay-%d-%02d", z+1, b+1)
			cfg.Sensors = append(cfg.Sensors, config.SensorConfig{Name: name, Driver: "gpio-presence", Pin: "GPIO" + name,
				Interval: 10 * time.Second, Location: &guidance.Location{Point: [2]float64{2.17 + float64(b)*1e-4, 41.38 + float64(z)*1e-4}}})
			zone.Bays = append(zone.Bays, name)
		}
		cfg.Zones = append(cfg.Zones, zone)
		cfg.Signs = append(cfg.Signs, config.SignConfig{Name: "sign-" + zone.Name, Zone: zone.Name, Driver: config.SignHT16K33,
			Bus: "1", Address: uint16(0x70 + z), Brightness: 8})
	}
	cfg.Signs = append(cfg.Signs, config.SignConfig{Name: "lamp-z1", Zone: "z1", Driver: config.SignGPIOLamp, Pin: "GPIO99", Active: gpio.Low})
	return cfg
}

// oracle is the test's own view of every bay, from the events it injected.
type oracle struct {
	open, fault, seen, occupied map[string]bool
	last                        map[string]time.Time
}

func newOracle() *oracle {
	return &oracle{open: map[string]bool{}, fault: map[string]bool{}, seen: map[string]bool{}, occupied: map[string]bool{}, last: map[string]time.Time{}}
}

func (o *oracle) state(bay string, now time.Time, interval time.Duration) guidance.State {
	if !o.open[bay] || o.fault[bay] || !o.seen[bay] || !now.Before(o.last[bay].Add(guidance.StaleAfter*interval)) {
		return guidance.Unknown
	}
	if o.occupied[bay] {
		return guidance.Occupied
	}
	return guidance.Free
}

// TestGuidanceStreet: a street of 40 bays in 4 zones with random arrivals
// and departures, sensors that fail, go quiet and come back, driven through
// the agent's wiring (the sampler's events, the sink, the deadline timer) on
// a fake clock. At every zone message handed to the uplink the counts equal
// the bay states behind them (an unknown bay never counts as free), seq
// grows by one per change, and every sign ends up showing its zone.
func TestGuidanceStreet(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	cfg := streetConfig(t, 4, 10)
	bays := map[string]string{} // bay → zone
	for _, z := range cfg.Zones {
		for _, b := range z.Bays {
			bays[b] = z.Name
		}
	}
	o := newOracle()
	up := &fakeUplink{}
	g, err := newGuide(cfg, up, clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lastSeq := map[string]uint64{}
	messages := 0
	var failures []string
	up.onSet = func(suffix string, payload []byte) {
		if !strings.HasPrefix(suffix, "zones/") {
			return
		}
		var z guidance.ZoneState
		if err := json.Unmarshal(payload, &z); err != nil {
			failures = append(failures, fmt.Sprintf("zone message %s: %v", payload, err))
			return
		}
		messages++
		var want [3]int
		for _, b := range cfg.Zones[z.Zone[1]-'1'].Bays {
			want[o.state(b, clock.Now(), 10*time.Second)]++
		}
		if z.Free != want[guidance.Free] || z.Occupied != want[guidance.Occupied] || z.Unknown != want[guidance.Unknown] ||
			z.Total != 10 || z.Free+z.Occupied+z.Unknown != z.Total {
			failures = append(failures, fmt.Sprintf("at %v: %s, but the bays are free %d occupied %d unknown %d",
				clock.Now().Format(time.TimeOnly), payload, want[guidance.Free], want[guidance.Occupied], want[guidance.Unknown]))
		}
		if last, ok := lastSeq[z.Zone]; ok && z.Seq != last+1 {
			failures = append(failures, fmt.Sprintf("zone %s: seq %d after %d", z.Zone, z.Seq, last))
		}
		lastSeq[z.Zone] = z.Seq
	}

	// The signs, on simulated chips, on their own goroutines.
	bus := sim.NewBus("sim-i2c1")
	chips := map[string]*ht16k33sim.Chip{}
	lamp := gpiolampsim.New("GPIO99")
	hw := &fixedSignHardware{bus: bus, lamp: lamp}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range cfg.Signs {
		if s.Driver == config.SignHT16K33 {
			chips[s.Zone] = ht16k33sim.New(nil)
			bus.Attach(s.Address, chips[s.Zone])
		}
		r := newSignRunner(s, func() (signDev, error) { return openSign(hw, s) }, clock, slog.New(slog.DiscardHandler))
		r.jitter = func(d time.Duration) time.Duration { return d }
		g.addSign(r)
		wg.Add(1)
		go func() { defer wg.Done(); r.run(ctx) }()
	}
	g.start()

	names := make([]string, 0, len(bays))
	for _, z := range cfg.Zones {
		names = append(names, z.Bays...)
	}
	rng := rand.New(rand.NewPCG(12, 34))
	// What the deadline timer does (guide.run), at every deadline up to t.
	advanceTo := func(to time.Time) {
		for {
			d, ok := g.model.Deadline()
			if !ok || d.After(to) {
				break
			}
			clock.Advance(d.Sub(clock.Now()))
			g.apply(g.model.Tick)
		}
		clock.Advance(to.Sub(clock.Now()))
	}
	quiet := map[string]bool{} // sensors that stopped reporting
	for step := 0; step < 5000; step++ {
		advanceTo(clock.Now().Add(time.Duration(rng.IntN(4000)) * time.Millisecond))
		b := names[rng.IntN(len(names))]
		switch p := rng.IntN(100); {
		case !o.open[b] || p < 2: // (re)opened
			o.open[b], o.fault[b], o.seen[b] = true, false, false
			g.opened(b)
			delete(quiet, b)
		case p < 4: // the sampler gives the sensor up: fault, halt
			o.fault[b] = true
			g.failed(b)
			o.open[b], o.seen[b] = false, false
			g.closed(b)
		case p < 6: // goes quiet: no more readings
			quiet[b] = true
		case quiet[b]:
		default: // a reading: arrival, departure or the same again
			occ := o.occupied[b]
			if p < 40 {
				occ = !occ
			}
			o.seen[b], o.fault[b], o.occupied[b], o.last[b] = true, false, occ, clock.Now()
			r := drivers.Reading{Sensor: b, Time: clock.Now(), Values: []drivers.Value{drivers.Flag(drivers.Occupied, occ)}}
			if !g.reading(r) {
				t.Fatal("publish_bays = true, but a bay reading was kept from the buffer")
			}
		}
		if len(failures) > 0 {
			t.Fatalf("step %d:\n%s", step, strings.Join(failures, "\n"))
		}
	}
	if messages < 1000 {
		t.Fatalf("only %d zone messages in 5000 steps", messages)
	}
	// Every retained zone message and ParkingGroup is the model's newest
	// state, and every sign shows its zone.
	for _, z := range g.model.Zones() {
		want, _ := json.Marshal(z)
		if got := up.get("zones/" + z.Zone); string(got) != string(want) {
			t.Errorf("retained %s = %s, want %s", z.Zone, got, want)
		}
		var pg struct {
			Available int `json:"availableSpotNumber"`
		}
		if err := json.Unmarshal(up.get("ngsi-ld/"+guidance.ParkingGroupID("gw-street", z.Zone)), &pg); err != nil || pg.Available != z.Free {
			t.Errorf("ParkingGroup %s: available %d (%v), want %d", z.Zone, pg.Available, err, z.Free)
		}
		waitShows(t, chips[z.Zone], z.Sign())
		if z.Zone == "z1" {
			waitLamp(t, lamp, z.Lamp(), gpio.Low)
		}
	}
	for _, b := range g.model.Bays() {
		var ps struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(up.get("ngsi-ld/"+guidance.ParkingSpotID("gw-street", b.Sensor)), &ps)
		if ps.Status != b.State.String() {
			t.Errorf("ParkingSpot %s: status %q, want %q", b.Sensor, ps.Status, b.State)
		}
	}
	// A clean stop blanks every sign and switches the lamp off.
	cancel()
	wg.Wait()
	for _, c := range chips {
		if got := c.Display().Shows(); got != guidance.SignUnknown {
			t.Errorf("after stop a sign shows %q, want %q", got, guidance.SignUnknown)
		}
	}
	if l, _ := lamp.Level(); l != gpio.High { // active low: off is high
		t.Errorf("after stop the lamp line is %v, want high (off)", l)
	}
	t.Logf("%d zone messages checked", messages)
}

// fixedSignHardware hands out one simulated bus and one lamp pin.
type fixedSignHardware struct {
	noHardware
	bus  *sim.Bus
	lamp *gpiolampsim.Pin
}

func (h *fixedSignHardware) signBus(config.SignConfig) (i2c.Bus, error)     { return h.bus, nil }
func (h *fixedSignHardware) lampPin(config.SignConfig) (gpio.PinOut, error) { return h.lamp, nil }

func waitShows(t testing.TB, c *ht16k33sim.Chip, want string) {
	t.Helper()
	waitUntil(t, func() bool { return c.Display().Shows() == want }, func() string {
		return fmt.Sprintf("sign shows %q, want %q", c.Display().Shows(), want)
	})
}

func waitLamp(t *testing.T, p *gpiolampsim.Pin, on bool, active gpio.Level) {
	t.Helper()
	want := active
	if !on {
		want = !active
	}
	waitUntil(t, func() bool { l, out := p.Level(); return out && l == want }, func() string {
		l, _ := p.Level()
		return fmt.Sprintf("lamp line %v, want %v", l, want)
	})
}

// waitUntil waits, in real time, for a sign goroutine to catch up (a bound,
// not a timing assertion).
func waitUntil(t testing.TB, ok func() bool, why func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSignRetry: a display that stops acknowledging is retried after 1 s,
// 2 s, 4 s ... (the sensors' ladder) on the injected clock, never earlier,
// is shown failing in its state meanwhile, and shows the zone's newest
// state once it answers again.
func TestSignRetry(t *testing.T) {
	clock := clockwork.NewFakeClock()
	bus := sim.NewBus("sim-i2c1")
	chip := ht16k33sim.New(nil)
	bus.Attach(0x70, chip)
	hw := &fixedSignHardware{bus: bus}
	s := config.SignConfig{Name: "corner", Zone: "z1", Driver: config.SignHT16K33, Bus: "1", Address: 0x70, Brightness: 8}
	r := newSignRunner(s, func() (signDev, error) { return openSign(hw, s) }, clock, slog.New(slog.DiscardHandler))
	r.jitter = func(d time.Duration) time.Duration { return d }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()

	zone := func(free, occ, unk int) guidance.ZoneState {
		return guidance.ZoneState{Zone: "z1", Free: free, Occupied: occ, Unknown: unk, Total: free + occ + unk}
	}
	r.set(zone(3, 1, 0))
	waitShows(t, chip, "   3")

	bus.Fail(0x70, sim.ErrNACK)
	r.set(zone(2, 2, 0))
	waitUntil(t, func() bool { return r.snapshot().Errors == 1 }, func() string { return "no failure recorded" })
	st := r.snapshot()
	if st.OK || !strings.Contains(st.LastError, "no acknowledge") || !st.NextRetry.Equal(clock.Now().Add(time.Second)) {
		t.Fatalf("state after a NACK = %+v, want failing, retry in 1 s", st)
	}
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(wait - time.Millisecond)
		r.set(zone(1, 3, 0)) // a change while failing waits for the retry
		time.Sleep(5 * time.Millisecond)
		if n := r.snapshot().Errors; n != uint64(i+1) {
			t.Fatalf("retry %d: %d failures before its time", i+1, n)
		}
		clock.Advance(time.Millisecond)
		waitUntil(t, func() bool { return r.snapshot().Errors == uint64(i+2) }, func() string { return fmt.Sprintf("retry %d not made", i+1) })
	}
	bus.Fail(0x70, nil)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(8 * time.Second)
	waitShows(t, chip, "   1")
	waitUntil(t, func() bool { return r.snapshot().OK }, func() string { return "not OK after recovery" })
	if st := r.snapshot(); st.Shows != "   1" || !st.NextRetry.IsZero() {
		t.Errorf("state after recovery = %+v", st)
	}
	r.set(zone(0, 3, 1))
	waitShows(t, chip, "FULL")
	r.set(zone(0, 0, 4))
	waitShows(t, chip, "----")
	r.set(zone(0, 4, 0))
	waitShows(t, chip, "FULL")
	cancel()
	<-done
	if got := chip.Display().Shows(); got != "----" {
		t.Errorf("after stop: %q", got)
	}
}

// TestGuideDeadline: the deadline timer makes a quiet bay unknown exactly
// 3 × its interval after its last reading, on the injected clock.
func TestGuideDeadline(t *testing.T) {
	clock := clockwork.NewFakeClock()
	cfg := streetConfig(t, 1, 2)
	up := &fakeUplink{}
	g, err := newGuide(cfg, up, clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	zone := func() guidance.ZoneState {
		var z guidance.ZoneState
		_ = json.Unmarshal(up.get("zones/z1"), &z)
		return z
	}
	g.opened("bay-1-01")
	g.reading(drivers.Reading{Sensor: "bay-1-01", Time: clock.Now(), Values: []drivers.Value{drivers.Flag(drivers.Occupied, false)}})
	if z := zone(); z.Free != 1 || z.Unknown != 1 {
		t.Fatalf("zone after a reading: %+v", z)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30*time.Second - time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if z := zone(); z.Free != 1 {
		t.Fatalf("bay unknown before 3 × interval: %+v", z)
	}
	clock.Advance(time.Millisecond)
	waitUntil(t, func() bool { return zone().Unknown == 2 }, func() string { return fmt.Sprintf("zone at 3 × interval: %+v", zone()) })
}

// TestPublishBaysOff: with publish_bays = false a bay's readings are not
// appended to the buffer and no ParkingSpot document leaves; zone counts and
// ParkingGroup documents do.
func TestPublishBaysOff(t *testing.T) {
	clock := clockwork.NewFakeClock()
	cfg := streetConfig(t, 1, 2)
	cfg.Guidance.PublishBays = false
	up := &fakeUplink{}
	g, err := newGuide(cfg, up, clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g.start()
	g.opened("bay-1-01")
	if g.reading(drivers.Reading{Sensor: "bay-1-01", Time: clock.Now(), Values: []drivers.Value{drivers.Flag(drivers.Occupied, true)}}) {
		t.Error("a bay reading goes to the buffer with publish_bays = false")
	}
	if !g.reading(drivers.Reading{Sensor: "air-1", Time: clock.Now(), Values: []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20)}}) {
		t.Error("an environmental reading is kept from the buffer")
	}
	var z guidance.ZoneState
	if err := json.Unmarshal(up.get("zones/z1"), &z); err != nil || z.Occupied != 1 {
		t.Errorf("zone message %s (%v), want one occupied", up.get("zones/z1"), err)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for topic := range up.retained {
		if strings.Contains(topic, "ParkingSpot") {
			t.Errorf("%s published with publish_bays = false", topic)
		}
	}
	if up.retained["ngsi-ld/"+guidance.ParkingGroupID("gw-street", "z1")] == nil {
		t.Error("no ParkingGroup document")
	}
}

// TestZoneSeqAcrossRestarts: seq goes on across restarts and crashes, and
// the reservation file is written once per block, not per change.
func TestZoneSeqAcrossRestarts(t *testing.T) {
	clock := clockwork.NewFakeClock()
	cfg := streetConfig(t, 2, 1)
	path := filepath.Join(cfg.Agent.StateDir, ZoneSeqFile)
	run := func(changes int) (first, last uint64, writes int) {
		up := &fakeUplink{}
		g, err := newGuide(cfg, up, clock, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		up.onSet = func(suffix string, payload []byte) {
			if suffix != "zones/z1" {
				return
			}
			var z guidance.ZoneState
			_ = json.Unmarshal(payload, &z)
			if first == 0 {
				first = z.Seq
			}
			last = z.Seq
		}
		g.start()
		g.opened("bay-1-01")
		for i := range changes {
			g.reading(drivers.Reading{Sensor: "bay-1-01", Time: clock.Now(), Values: []drivers.Value{drivers.Flag(drivers.Occupied, i%2 == 0)}})
			clock.Advance(time.Second)
		}
		g.seqs.mu.Lock()
		defer g.seqs.mu.Unlock()
		return first, last, g.seqs.writes
	}
	f1, l1, w1 := run(2500)
	if f1 != 1 || l1 != 2501 {
		t.Fatalf("first run: seq %d to %d, want 1 to 2501", f1, l1)
	}
	if w1 != 4 { // z1 at seq 1, 1001, 2001; z2 at seq 1
		t.Errorf("first run: reservation written %d times for 2501 seqs of z1 and 1 of z2, want one per %d per zone", w1, zoneSeqBlock)
	}
	f2, l2, _ := run(10) // a restart (or a crash: nothing is written at stop)
	if f2 <= l1 || f2 > l1+zoneSeqBlock+1 {
		t.Errorf("after a restart seq starts at %d, want above %d and at most one block on", f2, l1)
	}
	if l2 != f2+10 {
		t.Errorf("second run: seq %d to %d", f2, l2)
	}
	// A damaged file never stops the agent nor restarts seq at 1: it is
	// moved aside and seq goes on from the clock's Unix seconds.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := uint64(clock.Now().Unix()) + 1
	f3, _, _ := run(1)
	if f3 != want {
		t.Errorf("after a damaged seq file seq starts at %d, want about %d", f3, want)
	}
	if _, err := os.Stat(path + ".damaged"); err != nil {
		t.Errorf("damaged file not kept aside: %v", err)
	}
}

// TestStatusBays: the status message names the bays' states only with
// publish_bays = true; the control socket's live state always does.
func TestStatusBays(t *testing.T) {
	for _, publish := range []bool{true, false} {
		cfg := streetConfig(t, 1, 2)
		cfg.Guidance.PublishBays = publish
		g, err := newGuide(cfg, &fakeUplink{}, clockwork.NewFakeClock(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		a := &agent{cfg: cfg, guide: g}
		var m Status
		a.guidanceStatus(&m, cfg.Guidance.PublishBays)
		if len(m.Zones) != 1 || (len(m.Zones[0].Bays) == 2) != publish {
			t.Errorf("publish_bays = %v: status zones %+v", publish, m.Zones)
		}
		a.guidanceStatus(&m, true)
		if len(m.Zones[0].Bays) != 2 || m.Zones[0].Bays[0].Location == nil {
			t.Errorf("live state zones %+v", m.Zones)
		}
	}
}
