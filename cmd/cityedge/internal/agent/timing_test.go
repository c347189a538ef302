package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/jonboulle/clockwork"
)

// clockSensor reports when each read began (as an offset from t0) and
// advances the fake clock by the read's duration, as a slow chip would.
type clockSensor struct {
	clk      *clockwork.FakeClock
	t0       time.Time
	n        int
	readTime func(n int) time.Duration   // duration of read n (from 1)
	values   func(n int) []drivers.Value // nil: one temperature
	fail     func(n int) bool            // nil: never
	starts   chan<- time.Duration
}

func (s *clockSensor) Read(context.Context) ([]drivers.Value, error) {
	s.n++
	start := s.clk.Since(s.t0)
	if s.readTime != nil {
		if d := s.readTime(s.n); d > 0 {
			s.clk.Advance(d)
		}
	}
	// Told once the read's time has passed, so that the test sees the clock
	// where the sampler will.
	s.starts <- start
	if s.fail != nil && s.fail(s.n) {
		return nil, errors.New("bus error")
	}
	if s.values != nil {
		return s.values(s.n), nil
	}
	return []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20)}, nil
}
func (s *clockSensor) Halt() error    { return nil }
func (s *clockSensor) String() string { return "clock" }

func clockRunner(clk *clockwork.FakeClock, name string, interval, phase time.Duration, s drivers.Sensor) *sensorRunner {
	return &sensorRunner{
		cfg:    config.SensorConfig{Name: name, Driver: "test", Interval: interval},
		drv:    catalog.Driver{Open: func(catalog.Target, any) (drivers.Sensor, error) { return s, nil }},
		hw:     noHardware{},
		clock:  clk,
		log:    slog.New(slog.DiscardHandler),
		jitter: func(d time.Duration) time.Duration { return d },
		phase:  phase,
	}
}

// TestSamplerRhythm: the n-th read starts at open + phase + n × interval to
// the nanosecond, whatever the reads cost; a read that runs past instants
// skips them and counts them as missed ticks, never catching up in a burst.
func TestSamplerRhythm(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name       string
		phase      time.Duration
		readTime   func(n int) time.Duration
		want       []time.Duration // read start offsets
		wantMissed uint64
	}{
		{"instant reads", 0, nil, []time.Duration{0, 100 * ms, 200 * ms, 300 * ms, 400 * ms}, 0},
		{"phase and 7 ms reads: no drift", 30 * ms, func(int) time.Duration { return 7 * ms },
			[]time.Duration{30 * ms, 130 * ms, 230 * ms, 330 * ms, 430 * ms}, 0},
		{"reads of 99 ms", 0, func(int) time.Duration { return 99 * ms },
			[]time.Duration{0, 100 * ms, 200 * ms, 300 * ms}, 0},
		{"a read of exactly the interval misses nothing", 0, func(n int) time.Duration {
			if n == 2 {
				return 100 * ms
			}
			return 0
		}, []time.Duration{0, 100 * ms, 200 * ms, 300 * ms}, 0},
		{"a read of 250 ms misses two ticks", 0, func(n int) time.Duration {
			if n == 2 {
				return 250 * ms
			}
			return 0
		}, []time.Duration{0, 100 * ms, 400 * ms, 500 * ms}, 2},
		{"every read 150 ms: every other tick", 10 * ms, func(int) time.Duration { return 150 * ms },
			[]time.Duration{10 * ms, 210 * ms, 410 * ms, 610 * ms}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := clockwork.NewFakeClock()
			starts := make(chan time.Duration)
			s := &clockSensor{clk: clk, t0: clk.Now(), readTime: c.readTime, starts: starts}
			r := clockRunner(clk, "air-1", 100*ms, c.phase, s)
			var got []time.Duration
			var mu sync.Mutex
			sink := func(rd drivers.Reading, class buffer.Class) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, rd.Time.Sub(s.t0))
				if class != buffer.ClassEnvironmental {
					t.Errorf("a temperature ranked as class %d", class)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.run(ctx, sink); close(done) }()
			defer func() { cancel(); <-done }()

			for i, want := range c.want {
				// A read that ended on an instant starts the next at once.
				if clk.Since(s.t0) < want {
					if err := clk.BlockUntilContext(ctx, 1); err != nil {
						t.Fatal(err)
					}
					// Just before the instant nothing happens...
					if early := want - clk.Since(s.t0) - time.Nanosecond; early > 0 {
						clk.Advance(early)
						select {
						case at := <-starts:
							t.Fatalf("read %d began at %v, before %v", i+1, at, want)
						case <-time.After(5 * time.Millisecond):
						}
					}
					clk.Advance(want - clk.Since(s.t0))
				}
				if at := <-starts; at != want {
					t.Fatalf("read %d began at %v, want %v", i+1, at, want)
				}
			}
			if err := clk.BlockUntilContext(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if m := r.snapshot().MissedTicks; m != c.wantMissed {
				t.Errorf("missed ticks %d, want %d", m, c.wantMissed)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, at := range got {
				read := time.Duration(0)
				if c.readTime != nil {
					read = c.readTime(i + 1)
				}
				if at != c.want[i]+read {
					t.Errorf("reading %d stamped %v, want %v (start + read time)", i+1, at, c.want[i]+read)
				}
			}
		})
	}
}

// TestPhases: sensors sharing an I2C bus start spread over their interval;
// GPIO sensors and a bus's only sensor start at once.
func TestPhases(t *testing.T) {
	s := func(name, bus, pin string, iv time.Duration) config.SensorConfig {
		return config.SensorConfig{Name: name, Bus: bus, Pin: pin, Interval: iv}
	}
	cases := []struct {
		name    string
		sensors []config.SensorConfig
		want    []time.Duration
	}{
		{"one sensor", []config.SensorConfig{s("a", "1", "", time.Second)}, []time.Duration{0}},
		{"three on a bus", []config.SensorConfig{s("a", "1", "", 900*time.Millisecond), s("b", "1", "", 900*time.Millisecond),
			s("c", "1", "", 900*time.Millisecond)}, []time.Duration{0, 300 * time.Millisecond, 600 * time.Millisecond}},
		{"two buses, a pin between", []config.SensorConfig{s("a", "1", "", time.Second), s("bay", "", "GPIO17", time.Minute),
			s("b", "2", "", time.Second), s("c", "1", "", 100*time.Millisecond)},
			[]time.Duration{0, 0, 0, 50 * time.Millisecond}},
		{"pins never share a phase", []config.SensorConfig{s("p1", "", "GPIO17", time.Second), s("p2", "", "GPIO18", time.Second)},
			[]time.Duration{0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := phases(c.sensors); !slices.Equal(got, c.want) {
				t.Errorf("phases %v, want %v", got, c.want)
			}
		})
	}
}

// TestOccupancyRank: only a change, and the first state after an open or a
// fault, rank as occupancy (DECISIONS 8); re-reports, x/y/z and distances
// are ordinary readings.
func TestOccupancyRank(t *testing.T) {
	occ := func(b bool) drivers.Value { return drivers.Flag(drivers.Occupied, b) }
	x := drivers.Number("x", "T", 1e-5)
	var o occupancyRank
	steps := []struct {
		reset      bool
		in         []drivers.Value
		change     int // values ranked occupancy
		rest       int
		changeOnly bool
	}{
		{in: []drivers.Value{x, occ(false)}, change: 1, rest: 1}, // first state after start
		{in: []drivers.Value{x, occ(false)}, change: 0, rest: 2}, // periodic re-report
		{in: []drivers.Value{occ(true)}, change: 1, rest: 0},     // a change
		{in: []drivers.Value{x, occ(true)}, change: 0, rest: 2},
		{in: []drivers.Value{x}, change: 0, rest: 1},                            // distances, x/y/z
		{reset: true, in: []drivers.Value{occ(true)}, change: 1, rest: 0},       // first after a fault
		{in: []drivers.Value{drivers.Number(drivers.Occupied, "", 1)}, rest: 1}, // not a flag: not a state
	}
	for i, st := range steps {
		if st.reset {
			o.reset()
		}
		change, rest := o.split(st.in)
		if len(change) != st.change || len(rest) != st.rest {
			t.Errorf("step %d: %d change, %d rest; want %d, %d", i, len(change), len(rest), st.change, st.rest)
		}
		for _, v := range change {
			if v.Quantity != drivers.Occupied {
				t.Errorf("step %d: %s ranked as occupancy", i, v.Quantity)
			}
		}
	}
}

// TestSamplerRanksOccupancy runs a magnetometer-like sensor: the readings
// that carry a change (or the first state after open or a failed read) go
// out as an occupancy-only reading; x and re-reports are environmental.
func TestSamplerRanksOccupancy(t *testing.T) {
	clk := clockwork.NewFakeClock()
	starts := make(chan time.Duration)
	states := []bool{false, false, true, true, true, true, false}
	s := &clockSensor{clk: clk, t0: clk.Now(), starts: starts,
		values: func(n int) []drivers.Value {
			return []drivers.Value{drivers.Number("x", "T", 1e-5), drivers.Flag(drivers.Occupied, states[n-1])}
		},
		fail: func(n int) bool { return n == 5 }}
	r := clockRunner(clk, "bay-1", time.Second, 0, s)
	type out struct {
		class buffer.Class
		n     int
	}
	var mu sync.Mutex
	var got []out
	sink := func(rd drivers.Reading, class buffer.Class) {
		mu.Lock()
		got = append(got, out{class, len(rd.Values)})
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx, sink); close(done) }()
	defer func() { cancel(); <-done }()
	for i := range states {
		if i > 0 {
			if err := clk.BlockUntilContext(ctx, 1); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Second)
		}
		<-starts
	}
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	O, E := buffer.ClassOccupancy, buffer.ClassEnvironmental
	want := []out{
		{O, 1}, {E, 1}, // read 1: first state (false) + x
		{E, 2},         // read 2: false again
		{O, 1}, {E, 1}, // read 3: change to true
		{E, 2}, // read 4: true again
		// read 5 fails
		{O, 1}, {E, 1}, // read 6: first state after the fault
		{O, 1}, {E, 1}, // read 7: change to false
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("classes %v, want %v", got, want)
	}
}

// stalledQueue is a buffer whose commit blocks until released: Append
// records what it got and waits.
type stalledQueue struct {
	mu       sync.Mutex
	appended []buffer.Record
	calls    int
	dropped  map[string]uint64
	release  chan struct{}
	entered  chan struct{}
	refuse   string // a key whose records make a group fail
}

func (q *stalledQueue) Append(_ context.Context, recs []buffer.Record) (uint64, error) {
	q.mu.Lock()
	q.calls++
	for _, r := range recs {
		if q.refuse != "" && r.Key == q.refuse {
			q.mu.Unlock()
			return 0, errors.New("buffer: append: record too large")
		}
	}
	q.appended = append(q.appended, slices.Clone(recs)...)
	first := uint64(len(q.appended) - len(recs) + 1)
	q.mu.Unlock()
	if q.entered != nil {
		select {
		case q.entered <- struct{}{}:
		default:
		}
	}
	if q.release != nil {
		<-q.release
	}
	return first, nil
}

func (q *stalledQueue) CountDropped(key string, n uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dropped == nil {
		q.dropped = map[string]uint64{}
	}
	q.dropped[key] += n
}

// TestStalledDisk: with a buffer whose commit blocks, sampling keeps its
// rhythm exactly, the hand-off stays within its bound by dropping the
// oldest environmental readings and counting them per sensor, and an
// occupancy change made while the disk was stalled is kept and stored once
// the disk returns.
func TestStalledDisk(t *testing.T) {
	clk := clockwork.NewFakeClock()
	q := &stalledQueue{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	log := slog.New(slog.DiscardHandler)
	const bound = 800 // bytes: about 20 readings
	h := newHandoff(q, clk, log, bound)
	a := &agent{log: log, hand: h}
	fed := make(chan struct{})
	go func() { h.feed(); close(fed) }()

	t0 := clk.Now()
	airStarts, bayStarts := make(chan time.Duration, 1), make(chan time.Duration, 1)
	air := &clockSensor{clk: clk, t0: t0, starts: airStarts}
	// The bay turns occupied at its read 3 (t = 2 s), in the middle of the stall.
	bay := &clockSensor{clk: clk, t0: t0, starts: bayStarts, values: func(n int) []drivers.Value {
		return []drivers.Value{drivers.Flag(drivers.Occupied, n >= 3)}
	}}
	ra := clockRunner(clk, "air-1", 100*time.Millisecond, 0, air)
	rb := clockRunner(clk, "bay-1", time.Second, 50*time.Millisecond, bay)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range []*sensorRunner{ra, rb} {
		wg.Add(1)
		go func() { defer wg.Done(); r.run(ctx, a.handOff) }()
	}
	defer func() { cancel(); wg.Wait() }()

	<-airStarts // t = 0
	<-q.entered // the first append takes the first reading and stalls
	const steps = 50
	maxHeld := 0
	for i := 1; i <= steps; i++ {
		if err := clk.BlockUntilContext(ctx, 2); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		maxHeld = max(maxHeld, h.bytes)
		h.mu.Unlock()
		clk.Advance(50 * time.Millisecond) // bay's instants are at 50 ms + n s
		if (i-1)%10 == 0 {
			if at := <-bayStarts; at != time.Duration((i-1)/10)*time.Second+50*time.Millisecond {
				t.Fatalf("bay read at %v", at)
			}
			// The bay arms its next instant before the clock moves on.
			if err := clk.BlockUntilContext(ctx, 2); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(50 * time.Millisecond)
		if at, want := <-airStarts, time.Duration(i)*100*time.Millisecond; at != want {
			t.Fatalf("air read %d began at %v, want %v: the stalled disk broke the rhythm", i+1, at, want)
		}
	}
	if err := clk.BlockUntilContext(ctx, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	if maxHeld > bound {
		t.Errorf("the hand-off held %d bytes, bound %d", maxHeld, bound)
	}
	q.mu.Lock()
	dropped := q.dropped["air-1"]
	if dropped == 0 {
		t.Errorf("drops %v: want some of air-1", q.dropped)
	}
	q.mu.Unlock()

	close(q.release) // the disk returns
	h.close()
	<-fed
	var air1 uint64
	var changes []bool
	for _, r := range q.appended {
		switch {
		case r.Key == "air-1":
			air1++
		case r.Key == "bay-1" && r.Priority == buffer.ClassOccupancy:
			pack, _ := senml.Pack(nil, "gw", []senml.Item{{Seq: 1, Data: r.Data}})
			changes = append(changes, strings.Contains(string(pack), `"vb":true`))
		}
	}
	if produced := uint64(steps + 1); air1+dropped != produced {
		t.Errorf("air-1: %d stored + %d dropped, %d sampled", air1, dropped, produced)
	}
	if !slices.Equal(changes, []bool{false, true}) {
		t.Errorf("bay-1 occupancy records %v, want the first state and the change to occupied", changes)
	}
	t.Logf("air-1: %d stored, %d dropped; %d appends; hand-off peak %d bytes", air1, dropped, q.calls, maxHeld)
	if q.calls > 3 {
		t.Errorf("%d appends for one stall: the hand-off should append what gathered in one group", q.calls)
	}
}

// TestHandoffShed: over its bound the hand-off drops the oldest
// environmental records first and never an occupancy change, even when
// only occupancy changes are left.
func TestHandoffShed(t *testing.T) {
	rec := func(key string, class buffer.Class) buffer.Record {
		return buffer.Record{Key: key, Priority: class, Data: make([]byte, 10)}
	}
	E, O := buffer.ClassEnvironmental, buffer.ClassOccupancy
	cases := []struct {
		name  string
		in    []buffer.Record
		max   int
		keep  []string
		drops map[string]uint64
	}{
		{"within bound", []buffer.Record{rec("a", E), rec("b", O)}, 20, []string{"a", "b"}, map[string]uint64{}},
		{"oldest environmental first", []buffer.Record{rec("a1", E), rec("b", O), rec("a2", E), rec("a3", E)}, 25,
			[]string{"b", "a3"}, map[string]uint64{"a1": 1, "a2": 1}},
		{"occupancy over the bound stays", []buffer.Record{rec("a", E), rec("b1", O), rec("b2", O), rec("b3", O)}, 15,
			[]string{"b1", "b2", "b3"}, map[string]uint64{"a": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := &stalledQueue{}
			h := newHandoff(q, clockwork.NewFakeClock(), slog.New(slog.DiscardHandler), c.max)
			for _, r := range c.in {
				h.put(r)
			}
			var keys []string
			for _, r := range h.recs {
				keys = append(keys, r.Key)
			}
			if !slices.Equal(keys, c.keep) {
				t.Errorf("kept %v, want %v", keys, c.keep)
			}
			got := q.dropped
			if got == nil {
				got = map[string]uint64{}
			}
			if len(got) != len(c.drops) {
				t.Errorf("drops %v, want %v", got, c.drops)
			}
			for k, n := range c.drops {
				if got[k] != n {
					t.Errorf("drops %v, want %v", got, c.drops)
				}
			}
		})
	}
}

// TestHandoffRefusedRecord: a record the buffer refuses costs only itself;
// the others of its group are appended one by one.
func TestHandoffRefusedRecord(t *testing.T) {
	q := &stalledQueue{refuse: "bad"}
	h := newHandoff(q, clockwork.NewFakeClock(), slog.New(slog.DiscardHandler), 1<<20)
	for _, k := range []string{"a", "bad", "b"} {
		h.put(buffer.Record{Key: k, Data: []byte("x")})
	}
	h.close()
	h.feed()
	var keys []string
	for _, r := range q.appended {
		keys = append(keys, r.Key)
	}
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Errorf("appended %v, want [a b]", keys)
	}
}

// TestUplinkNote: systemd's STATUS= says when the next attempt is due and
// how many were made.
func TestUplinkNote(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		st   uplink.State
		want string
	}{
		{uplink.State{Connected: true, Broker: "mqtts://b:8883"}, "connected to mqtts://b:8883"},
		{uplink.State{NextAttempt: now.Add(700 * time.Millisecond), Attempts: 2},
			"offline, next attempt in 700ms (at 2026-11-25T10:00:00Z), 2 attempts so far"},
		{uplink.State{Attempts: 3}, "offline, attempt 4 under way"},
		{uplink.State{}, "offline"},
	}
	for _, c := range cases {
		if got := uplinkNote(c.st, now); got != c.want {
			t.Errorf("uplinkNote(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
}
