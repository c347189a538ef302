package guidance

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 123_000_000, time.UTC)

// street returns a config of zones, each with n parking sensors sampled
// every interval, named <zone>-b<i>, with locations.
func street(interval time.Duration, n int, zones ...string) Config {
	cfg := Config{AgentID: "gw-7", Sensors: map[string]Sensor{}}
	for zi, z := range zones {
		zc := Zone{Name: z}
		for i := range n {
			name := fmt.Sprintf("%s-b%d", z, i)
			zc.Bays = append(zc.Bays, name)
			cfg.Sensors[name] = Sensor{Driver: "gpio-presence", Parking: true, Interval: interval,
				Location: &Location{Point: [2]float64{2.15 + float64(i)*1e-5, 41.39 + float64(zi)*1e-4}}}
		}
		cfg.Zones = append(cfg.Zones, zc)
	}
	return cfg
}

func TestZoneMessage(t *testing.T) {
	z := ZoneState{Zone: "z1", Free: 3, Occupied: 5, Unknown: 0, Total: 8, Changed: t0, Seq: 42}
	b, err := json.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"zone":"z1","free":3,"occupied":5,"unknown":0,"total":8,"changed":"2026-12-03T10:00:00.123Z","seq":42}`
	if string(b) != want {
		t.Errorf("zone message\n got %s\nwant %s", b, want)
	}
	// Another time zone and a whole second are still UTC with milliseconds.
	z.Changed = time.Date(2026, 12, 3, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	b, _ = json.Marshal(z)
	if !strings.Contains(string(b), `"changed":"2026-12-03T10:00:00.000Z","seq":42}`) {
		t.Errorf("zone message with a CET time: %s", b)
	}
	var back ZoneState
	if err := json.Unmarshal(b, &back); err != nil || back.Seq != 42 || !back.Changed.Equal(z.Changed) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"zone":"z1","free":3,"occupied":5,"unknown":1,"total":8,"changed":"2026-12-03T10:00:00.123Z","seq":1}`), &back); err == nil {
		t.Error("a message whose counts do not add up was accepted")
	}
}

func TestSign(t *testing.T) {
	cases := []struct {
		free, occ, unk int
		want           string
		lamp           bool
	}{
		{3, 5, 0, "   3", false},
		{0, 8, 0, "FULL", true},
		{0, 7, 1, "FULL", true}, // one bay known, none free
		{0, 0, 8, "----", false},
		{1, 0, 7, "   1", false},
		{12, 0, 0, "  12", false},
		{1234, 0, 0, "1234", false},
		{12000, 0, 0, "9999", false},
	}
	for _, tc := range cases {
		z := ZoneState{Free: tc.free, Occupied: tc.occ, Unknown: tc.unk, Total: tc.free + tc.occ + tc.unk}
		if got := z.Sign(); got != tc.want {
			t.Errorf("%d free %d occupied %d unknown: sign %q, want %q", tc.free, tc.occ, tc.unk, got, tc.want)
		}
		if got := z.Lamp(); got != tc.lamp {
			t.Errorf("%d free %d occupied %d unknown: lamp %v, want %v", tc.free, tc.occ, tc.unk, got, tc.lamp)
		}
	}
}

// One bay through every rule, step by step, on the fake clock.
func TestBayLifecycle(t *testing.T) {
	const iv = 10 * time.Second
	clock := clockwork.NewFakeClockAt(t0)
	m, err := New(street(iv, 2, "z1"), clock, map[string]uint64{"z1": 41})
	if err != nil {
		t.Fatal(err)
	}
	zone := func() ZoneState { z, _ := m.Zone("z1"); return z }
	if z := zone(); z.Seq != 42 || z.Unknown != 2 || z.Total != 2 || !z.Changed.Equal(t0) || z.Sign() != "----" {
		t.Fatalf("at start: %+v; want all unknown at seq 42", z)
	}
	seq := uint64(42)
	steps := []struct {
		name    string
		advance time.Duration
		do      func() Update
		want    State // of z1-b0 afterwards
		changed bool
	}{
		{"a reading before open is ignored", 0, func() Update { return m.Reading("z1-b0", false, clock.Now()) }, Unknown, false},
		{"opened: no reading yet", 0, func() Update { return m.Opened("z1-b0") }, Unknown, false},
		{"first reading", time.Second, func() Update { return m.Reading("z1-b0", true, clock.Now()) }, Occupied, true},
		{"same again", iv, func() Update { return m.Reading("z1-b0", true, clock.Now()) }, Occupied, false},
		{"car leaves", iv, func() Update { return m.Reading("z1-b0", false, time.Time{}) }, Free, true},
		{"an older reading is ignored", 0, func() Update { return m.Reading("z1-b0", true, clock.Now().Add(-time.Second)) }, Free, false},
		{"quiet for 3 intervals less 1ns", 3*iv - 1, m.Tick, Free, false},
		{"quiet for 3 intervals", 1, m.Tick, Unknown, true},
		{"reading again", time.Second, func() Update { return m.Reading("z1-b0", false, clock.Now()) }, Free, true},
		{"fault", 0, func() Update { return m.Fault("z1-b0") }, Unknown, true},
		{"fault again", 0, func() Update { return m.Fault("z1-b0") }, Unknown, false},
		{"reading after the fault", iv, func() Update { return m.Reading("z1-b0", true, clock.Now()) }, Occupied, true},
		{"closed", 0, func() Update { return m.Closed("z1-b0") }, Unknown, true},
		{"a watcher's late report", 0, func() Update { return m.Reading("z1-b0", true, clock.Now()) }, Unknown, false},
		{"reopened", time.Second, func() Update { return m.Opened("z1-b0") }, Unknown, false},
		{"reading after reopening", time.Second, func() Update { return m.Reading("z1-b0", false, clock.Now()) }, Free, true},
		{"not a bay", 0, func() Update { return m.Reading("weather", true, clock.Now()) }, Free, false},
		{"a stale reading delivered late", 0, func() Update { return m.Reading("z1-b0", true, clock.Now().Add(3*iv)) }, Occupied, true},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		u := st.do()
		got := m.Bays()[0]
		if got.Sensor != "z1-b0" || got.State != st.want {
			t.Fatalf("%s: bay %+v, want %s", st.name, got, st.want)
		}
		if !st.changed {
			if !u.Empty() {
				t.Fatalf("%s: update %+v, want none", st.name, u)
			}
			continue
		}
		if b, ok := u.Bay("z1-b0"); !ok || b.State != st.want {
			t.Fatalf("%s: Update.Bay = %+v, %v", st.name, b, ok)
		}
		seq++
		want := BayState{Sensor: "z1-b0", Zone: "z1", State: st.want, Changed: clock.Now()}
		if len(u.Bays) != 1 || u.Bays[0] != want || len(u.Zones) != 1 {
			t.Fatalf("%s: update %+v, want bay %+v in one zone", st.name, u, want)
		}
		if z := u.Zones[0]; z.Seq != seq || !z.Changed.Equal(clock.Now()) || z != zone() {
			t.Fatalf("%s: zone %+v, want seq %d changed now, as Zone() says (%+v)", st.name, z, seq, zone())
		}
	}
	// The bay with no sensor ever opened stayed unknown throughout.
	if b := m.Bays()[1]; b.State != Unknown || !b.Changed.Equal(t0) {
		t.Errorf("untouched bay: %+v", b)
	}
}

// Deadline says exactly when Tick will find a bay stale, and several bays
// going stale at once are one zone change.
func TestDeadline(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	cfg := street(time.Second, 3, "a")
	s := cfg.Sensors["a-b2"]
	s.Interval = 5 * time.Second
	cfg.Sensors["a-b2"] = s
	m, err := New(cfg, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Deadline(); ok {
		t.Fatal("a deadline with every bay unknown")
	}
	for _, b := range []string{"a-b0", "a-b1", "a-b2"} {
		m.Opened(b)
		m.Reading(b, false, clock.Now())
	}
	if z, _ := m.Zone("a"); z.Seq != 4 || z.Free != 3 {
		t.Fatalf("zone %+v: want 3 free at seq 4 (start, then one change per bay)", z)
	}
	if d, ok := m.Deadline(); !ok || !d.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("deadline %v %v, want t0+3s", d, ok)
	}
	clock.Advance(3 * time.Second)
	u := m.Tick()
	if len(u.Bays) != 2 || len(u.Zones) != 1 || u.Zones[0].Seq != 5 || u.Zones[0].Unknown != 2 || u.Zones[0].Free != 1 {
		t.Fatalf("two bays stale at once: %+v", u)
	}
	if d, ok := m.Deadline(); !ok || !d.Equal(t0.Add(15*time.Second)) {
		t.Fatalf("deadline %v %v, want t0+15s (the slow sensor)", d, ok)
	}
	clock.Advance(12 * time.Second)
	if u := m.Reading("a-b0", true, clock.Now()); len(u.Zones) != 1 {
		t.Fatalf("an event at the deadline also evaluates staleness: %+v", u)
	}
	if z, _ := m.Zone("a"); z.Occupied != 1 || z.Unknown != 2 || z.Seq != 6 {
		t.Fatalf("zone %+v: want one occupied, two unknown, seq 6 (one change)", z)
	}
}

func clockworkFake() clockwork.Clock { return clockwork.NewFakeClockAt(t0) }

func FuzzZoneMessage(f *testing.F) {
	f.Add([]byte(`{"zone":"z1","free":3,"occupied":5,"unknown":0,"total":8,"changed":"2026-12-03T10:00:00.123Z","seq":42}`))
	f.Add([]byte(`{"zone":"z1","free":-1,"occupied":9,"unknown":0,"total":8,"changed":"2026-12-03T10:00:00.123Z","seq":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var z ZoneState
		if err := json.Unmarshal(b, &z); err != nil {
			return
		}
		if z.Free < 0 || z.Occupied < 0 || z.Unknown < 0 || z.Free+z.Occupied+z.Unknown != z.Total {
			t.Fatalf("%s accepted as %+v", b, z)
		}
		out, err := json.Marshal(z)
		if err != nil {
			t.Fatal(err)
		}
		var back ZoneState
		if err := json.Unmarshal(out, &back); err != nil || !back.Changed.Equal(z.Changed) {
			t.Fatalf("%s → %s → %+v, %v", b, out, back, err)
		}
		back.Changed = z.Changed
		if back != z {
			t.Fatalf("%s → %s → %+v, want %+v", b, out, back, z)
		}
	})
}
