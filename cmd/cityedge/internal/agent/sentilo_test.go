package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/cityedge/cityedge/uplink/sentilo"
)

// fakeSentilo answers like Sentilo by the rules the client applies
// (uplink/sentilo is tested against the stand-in server): ids in held are
// rejected (Held, retry in 10 s), a closed gate returns Retry, and every
// stored observation is recorded.
type fakeSentilo struct {
	mu       sync.Mutex    // for tests that run the output's own goroutine
	offered  chan struct{} // nil, or told of each Publish
	clock    clockwork.Clock
	held     map[string]bool
	gate     time.Time
	stored   map[string]int       // "id@seq" → times stored
	times    map[string]time.Time // id → time of the last observation stored
	requests int
}

func (f *fakeSentilo) Publish(_ context.Context, rs []sentilo.Reading) []sentilo.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.offered != nil {
		defer func() { f.offered <- struct{}{} }()
	}
	out := make([]sentilo.Outcome, len(rs))
	now := f.clock.Now()
	if now.Before(f.gate) {
		for i := range out {
			out[i] = sentilo.Outcome{Status: sentilo.Retry, Reason: "429", RetryAt: f.gate}
		}
		return out
	}
	f.requests++
	for i, r := range rs {
		if f.held[r.ID] {
			out[i] = sentilo.Outcome{Status: sentilo.Held, Reason: "404.1", RetryAt: now.Add(10 * time.Second)}
			continue
		}
		f.stored[r.ID+"@"+time.Duration(r.Key).String()]++
		if f.times != nil {
			f.times[r.ID] = r.Time
		}
		out[i] = sentilo.Outcome{Status: sentilo.Acked}
	}
	return out
}

func (f *fakeSentilo) Wait(context.Context) error { return nil }
func (f *fakeSentilo) Gate() sentilo.Gate         { return sentilo.Gate{} }
func (f *fakeSentilo) Held() []sentilo.HeldSensor { return nil }
func (f *fakeSentilo) Stats() sentilo.Stats       { return sentilo.Stats{} }
func (f *fakeSentilo) Reconnect() { // as the client: the backoff of failed exchanges ends
	f.mu.Lock()
	f.gate = time.Time{}
	f.mu.Unlock()
}
func (f *fakeSentilo) storedOnce(t *testing.T) bool { t.Helper(); return f.dups() == 0 }
func (f *fakeSentilo) dups() int {
	n := 0
	for _, c := range f.stored {
		n += c - 1
	}
	return n
}

type sentiloRig struct {
	t     *testing.T
	path  string
	clock *clockwork.FakeClock
	q     *buffer.Queue
	mqtt  *buffer.Output
	out   *sentiloOutput
	fake  *fakeSentilo
	ids   map[sentilo.Quantity]string
	// noKeep: the output keeps no accepted parts (the behaviour before
	// accepted.go, to show what the test catches).
	noKeep bool
}

func newSentiloRig(t *testing.T) *sentiloRig {
	r := &sentiloRig{t: t, path: filepath.Join(t.TempDir(), "buffer.db"),
		clock: clockwork.NewFakeClockAt(time.Date(2026, 6, 12, 10, 0, 0, 0, time.UTC))}
	r.fake = &fakeSentilo{clock: r.clock, held: map[string]bool{}, stored: map[string]int{}}
	r.ids = map[sentilo.Quantity]string{
		{Sensor: "env", Quantity: "temperature"}: "gw-env-temperature",
		{Sensor: "env", Quantity: "humidity"}:    "gw-env-humidity",
		{Sensor: "bay1", Quantity: "occupied"}:   "gw-bay1-occupied",
		{Sensor: "bay2", Quantity: "occupied"}:   "gw-bay2-occupied",
		{Sensor: "z1", Quantity: "free"}:         "gw-z1-free",
		{Sensor: "z1", Quantity: "occupied"}:     "gw-z1-occupied",
		{Sensor: "z1", Quantity: "unknown"}:      "gw-z1-unknown",
		{Sensor: "z1", Quantity: "total"}:        "gw-z1-total",
	}
	r.open()
	return r
}

func (r *sentiloRig) open() {
	q, err := buffer.Open(r.path, buffer.Options{Outputs: []string{outputMQTT, outputSentilo}, Clock: r.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		r.t.Fatal(err)
	}
	r.q = q
	r.mqtt, _ = q.Output(outputMQTT)
	view, err := q.Output(outputSentilo)
	if err != nil {
		r.t.Fatal(err)
	}
	r.out = newSentiloOutput(view, r.fake, r.ids, 100, time.Second, r.clock, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !r.noKeep {
		r.out.keep = q
	}
}

func (r *sentiloRig) close() {
	if err := r.q.Close(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *sentiloRig) put(rd drivers.Reading, class buffer.Class) uint64 {
	r.t.Helper()
	data, err := senml.AppendReading(nil, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	seq, err := r.q.Append(context.Background(), []buffer.Record{{Key: rd.Sensor, Priority: class, Data: data}})
	if err != nil {
		r.t.Fatal(err)
	}
	return seq
}

func (r *sentiloRig) env(i int) uint64 {
	return r.put(drivers.Reading{Sensor: "env", Time: r.clock.Now(), Values: []drivers.Value{
		drivers.Number("temperature", "Cel", 20+float64(i)), drivers.Number("humidity", "%RH", 50)}}, buffer.ClassEnvironmental)
}

func (r *sentiloRig) bay(name string, occ bool) uint64 {
	return r.put(drivers.Reading{Sensor: name, Time: r.clock.Now(), Values: []drivers.Value{drivers.Flag("occupied", occ)}}, buffer.ClassOccupancy)
}

// steps runs the output until it has nothing to send now.
func (r *sentiloRig) steps() {
	r.t.Helper()
	for i := 0; ; i++ {
		reqs := r.fake.requests
		wait, err := r.out.step(context.Background())
		if err != nil {
			r.t.Fatal(err)
		}
		if wait > 0 && r.fake.requests == reqs {
			return
		}
		if i > 1000 {
			r.t.Fatal("the output does not settle")
		}
	}
}

// pendingFor lists what the Sentilo output has still to get, per the buffer.
func pendingFor(t *testing.T, o interface {
	ReadAfter(uint64, int, int) ([]buffer.Entry, error)
}) []uint64 {
	t.Helper()
	es, err := o.ReadAfter(0, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// TestSentiloHeldSensorBlocksNoOne: a bay the city has not registered is
// held — its readings stay in the buffer for Sentilo — while every other
// reading is delivered; once registered, the held readings are delivered
// at the next retry and nothing stored is sent twice. A restart in
// between resumes at Sentilo's progress.
func TestSentiloHeldSensorBlocksNoOne(t *testing.T) {
	r := newSentiloRig(t)
	r.fake.held["gw-bay2-occupied"] = true
	var heldSeqs []uint64
	for i := range 10 {
		r.env(i)
		r.bay("bay1", i%2 == 0)
		heldSeqs = append(heldSeqs, r.bay("bay2", i%2 == 1))
	}
	r.clock.Advance(time.Second) // batch_wait of the environmental readings
	r.steps()
	if got := pendingFor(t, r.out.q); len(got) != len(heldSeqs) || got[0] != heldSeqs[0] {
		t.Fatalf("sentilo has still to get %v, want only the held bay's %v", got, heldSeqs)
	}
	if len(r.fake.stored) != 30 { // 10 × (temperature, humidity, bay1)
		t.Fatalf("stored %d observations, want 30", len(r.fake.stored))
	}
	// MQTT has everything: the buffer keeps only the held ones.
	if err := r.mqtt.Ack(pendingFor(t, r.mqtt)...); err != nil {
		t.Fatal(err)
	}
	// New readings of others go while bay2 is still held, without waiting for it.
	r.env(100)
	r.clock.Advance(time.Second)
	r.steps()
	if len(r.fake.stored) != 32 {
		t.Fatalf("stored %d, want 32: a held sensor must not block the others", len(r.fake.stored))
	}
	// Restart: Sentilo resumes where it stood.
	r.close()
	r.open()
	defer r.close()
	stored := len(r.fake.stored)
	r.steps()
	if got := pendingFor(t, r.out.q); len(got) != len(heldSeqs) {
		t.Fatalf("after restart sentilo has %d to get, want the %d held", len(got), len(heldSeqs))
	}
	if len(r.fake.stored) != stored || !r.fake.storedOnce(t) {
		t.Fatalf("after restart something stored was sent again: %d dups", r.fake.dups())
	}
	// The city registers bay2: delivered at the next retry (10 s).
	delete(r.fake.held, "gw-bay2-occupied")
	r.steps()
	if n := len(pendingFor(t, r.out.q)); n != len(heldSeqs) {
		t.Fatalf("held readings went before their retry time: %d left", n)
	}
	r.clock.Advance(10 * time.Second)
	r.steps()
	if got := pendingFor(t, r.out.q); len(got) != 0 {
		t.Fatalf("after registration sentilo has still to get %v", got)
	}
	if len(r.fake.stored) != 42 || r.fake.dups() != 0 {
		t.Fatalf("stored %d (want 42), %d duplicates (want 0)", len(r.fake.stored), r.fake.dups())
	}
	if err := r.mqtt.Ack(pendingFor(t, r.mqtt)...); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, r.q)
}

func waitEmpty(t *testing.T, q *buffer.Queue) {
	t.Helper()
	for i := 0; q.Stats().Count != 0; i++ {
		if i > 2000 {
			t.Fatalf("buffer still holds %d readings both outputs have", q.Stats().Count)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSentiloBatchWaitAndGate: a partial batch of environmental readings
// waits batch_wait, an occupancy change goes at once; while the gate is
// closed (429) nothing is acknowledged and everything goes after it.
func TestSentiloBatchWaitAndGate(t *testing.T) {
	r := newSentiloRig(t)
	defer r.close()
	r.env(1)
	wait, err := r.out.step(context.Background())
	if err != nil || wait != time.Second || r.fake.requests != 0 {
		t.Fatalf("partial batch: wait %v err %v requests %d; want it to wait 1s", wait, err, r.fake.requests)
	}
	r.bay("bay1", true)
	r.steps()
	if r.fake.requests != 1 || len(r.fake.stored) != 3 {
		t.Fatalf("an occupancy change should send the batch at once: %d requests, %d stored", r.fake.requests, len(r.fake.stored))
	}
	r.fake.gate = r.clock.Now().Add(time.Minute)
	r.env(2)
	r.clock.Advance(time.Second)
	r.steps()
	if len(pendingFor(t, r.out.q)) != 1 || r.fake.requests != 1 {
		t.Fatal("a reading went through a closed gate")
	}
	r.clock.Advance(time.Minute)
	r.steps()
	if len(pendingFor(t, r.out.q)) != 0 || len(r.fake.stored) != 5 || r.fake.dups() != 0 {
		t.Fatalf("after the reset: %d pending, %d stored, %d dups", len(pendingFor(t, r.out.q)), len(r.fake.stored), r.fake.dups())
	}
}

// TestSentiloZoneCounts: zone counts are buffered as their own class,
// published to Sentilo under the four zone ids, and never sent to MQTT.
func TestSentiloZoneCounts(t *testing.T) {
	r := newSentiloRig(t)
	defer r.close()
	log := slog.New(slog.DiscardHandler)
	a := &agent{q: r.q, sentilo: r.out, clock: r.clock, log: log}
	a.hand = newHandoff(r.q, r.clock, log, 1<<20)
	fed := make(chan struct{})
	go func() { defer close(fed); a.hand.feed() }()
	// As the guidance model's deliver does: the hand-off, not the disk.
	a.zonesForSentilo([]guidance.ZoneState{{Zone: "z1", Free: 3, Occupied: 1, Total: 4, Changed: r.clock.Now()}})
	a.hand.close()
	<-fed
	r.steps()
	for _, id := range []string{"gw-z1-free", "gw-z1-occupied", "gw-z1-unknown", "gw-z1-total"} {
		found := false
		for k := range r.fake.stored {
			found = found || len(k) > len(id) && k[:len(id)+1] == id+"@"
		}
		if !found {
			t.Fatalf("zone count %s not published (stored %v)", id, r.fake.stored)
		}
	}
	es, err := mqttQueue{r.mqtt}.ReadAfter(0, 100, 0)
	if err != nil || len(es) != 0 {
		t.Fatalf("MQTT reads %d zone records, %v; want none", len(es), err)
	}
	waitEmpty(t, r.q)
}

// TestSentiloHeldBeyondMemory: with more held readings than the output
// keeps in memory, the others keep flowing, the held ones stay in the
// buffer, and all are delivered, once each, after the registration.
func TestSentiloHeldBeyondMemory(t *testing.T) {
	defer func(n int) { maxSentiloPending = n }(maxSentiloPending)
	maxSentiloPending = 5
	r := newSentiloRig(t)
	defer r.close()
	r.fake.held["gw-bay2-occupied"] = true
	for i := range 20 {
		r.bay("bay2", i%2 == 0)
		r.bay("bay1", i%2 == 0)
	}
	r.steps()
	if len(r.fake.stored) != 20 {
		t.Fatalf("stored %d of bay1's 20 while bay2 is held", len(r.fake.stored))
	}
	if len(r.out.pending) > 5+r.out.batchMax {
		t.Fatalf("%d readings held in memory", len(r.out.pending))
	}
	delete(r.fake.held, "gw-bay2-occupied")
	for range 5 {
		r.clock.Advance(10 * time.Second)
		r.steps()
	}
	if got := pendingFor(t, r.out.q); len(got) != 0 || len(r.fake.stored) != 40 || r.fake.dups() != 0 {
		t.Fatalf("after registration: %d left, %d stored (want 40), %d dups", len(got), len(r.fake.stored), r.fake.dups())
	}
}

// TestSentiloClockRule: the clock rule holds a reading for Sentilo as it
// does for MQTT, and Sentilo then gets the corrected time (it has no field
// for the mark).
func TestSentiloClockRule(t *testing.T) {
	r := newSentiloRig(t)
	defer r.close()
	r.fake.times = map[string]time.Time{}
	g := &gateway{clk: r.clock, bootAt: r.clock.Now().Add(-time.Minute), bootID: 9, wallErr: -400 * 24 * time.Hour}
	build := r.clock.Now().AddDate(0, -1, 0) // the rig's clock is months before ruleBuild
	r.out.clk = newClockRule(g, build, time.Hour, r.q, r.clock, slog.New(slog.DiscardHandler))
	taken := r.clock.Now()
	rd := drivers.Reading{Sensor: "env", Time: g.Wall(), Values: []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20)}}
	boot := r.out.clk.stamp(&rd)
	if boot == nil {
		t.Fatal("a reading taken with an untrusted clock was not stamped")
	}
	data, err := senml.AppendReading(nil, rd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.q.Append(context.Background(), []buffer.Record{{Key: rd.Sensor, Data: data, Boot: boot}}); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(2 * time.Second)
	wait, err := r.out.step(context.Background())
	if err != nil || wait <= 0 {
		t.Fatalf("step while held: wait %v, %v; want a wait and no error", wait, err)
	}
	if r.fake.requests != 0 {
		t.Fatalf("%d requests while the clock was not trusted", r.fake.requests)
	}
	g.wallErr, g.synced = 0, true // NTP
	r.out.clk.tr.Check()
	r.out.clk.learn()
	for range 3 {
		if _, err := r.out.step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	got, ok := r.fake.times["gw-env-temperature"]
	if !ok {
		t.Fatal("nothing reached Sentilo after the clock was trusted")
	}
	if d := got.Sub(taken); d < -time.Second || d > time.Second {
		t.Errorf("Sentilo got %v, the reading was taken at %v", got, taken)
	}
}

// TestSentiloPartialAcceptSurvivesRestart: Sentilo stores a reading's
// temperature and rejects its humidity (404: not registered). After a
// restart (the buffer reopened, a new output), only the humidity is sent
// once it is registered: the temperature Sentilo has is not sent again.
// Without the kept part it would be (the control case).
func TestSentiloPartialAcceptSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noKeep bool
		want   int // times the temperature is stored
	}{{"kept", false, 1}, {"not kept (control)", true, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSentiloRig(t)
			r.noKeep = tc.noKeep
			r.close()
			r.open()
			r.fake.held["gw-env-humidity"] = true
			seq := r.env(1)
			other := r.env(2)
			r.clock.Advance(time.Second) // batch_wait
			r.steps()
			temp, hum := "gw-env-temperature@"+time.Duration(seq).String(), "gw-env-humidity@"+time.Duration(seq).String()
			if r.fake.stored[temp] != 1 || r.fake.stored[hum] != 0 {
				t.Fatalf("before the restart: stored %v", r.fake.stored)
			}
			if !tc.noKeep && len(r.q.StateWithPrefix(acceptedPrefix)) != 2 {
				t.Fatalf("kept accepted parts: %v", r.q.StateWithPrefix(acceptedPrefix))
			}
			r.close()
			r.open()
			delete(r.fake.held, "gw-env-humidity")
			r.clock.Advance(11 * time.Second)
			r.steps()
			if r.fake.stored[temp] != tc.want || r.fake.stored[hum] != 1 {
				t.Fatalf("after the restart: temperature stored %d times (want %d), humidity %d (want 1): %v",
					r.fake.stored[temp], tc.want, r.fake.stored[hum], r.fake.stored)
			}
			if n := r.fake.stored["gw-env-humidity@"+time.Duration(other).String()]; n != 1 {
				t.Fatalf("the other reading's humidity stored %d times", n)
			}
			r.steps() // the acknowledgements reach the buffer
			if left := pendingFor(t, r.out.q); len(left) != 0 {
				t.Fatalf("left for Sentilo: %v", left)
			}
			if kept := r.q.StateWithPrefix(acceptedPrefix); len(kept) != 0 {
				t.Fatalf("accepted parts still kept after full delivery: %v", kept)
			}
			r.close()
			r.open() // and they stay gone
			if kept := r.q.StateWithPrefix(acceptedPrefix); len(kept) != 0 {
				t.Fatalf("accepted parts back after a restart: %v", kept)
			}
			r.close()
		})
	}
}

// TestSentiloAcceptedPartOfAReadingGoneOtherwise: a reading Sentilo stored
// in part leaves the buffer another way (the bound drops the oldest
// first; here it is deleted for every output); at the next start its kept
// accepted part goes too, and the other reading's stays.
func TestSentiloAcceptedPartOfAReadingGoneOtherwise(t *testing.T) {
	r := newSentiloRig(t)
	r.fake.held["gw-env-humidity"] = true
	seq := r.env(1)
	other := r.env(2)
	r.clock.Advance(time.Second) // batch_wait
	r.steps()
	if kept := r.q.StateWithPrefix(acceptedPrefix); len(kept) != 2 {
		t.Fatalf("kept accepted parts: %v", kept)
	}
	if err := r.q.Ack(seq); err != nil { // gone for every output
		t.Fatal(err)
	}
	r.close()
	r.open()
	r.steps()
	kept := r.q.StateWithPrefix(acceptedPrefix)
	if _, ok := kept[acceptedKey(other)[len(acceptedPrefix):]]; len(kept) != 1 || !ok {
		t.Fatalf("after the restart, kept %v; want only reading %d's", kept, other)
	}
	r.close()
}

// TestSentiloReconnectOffersPendingAtOnce: readings turned back by a
// closed gate (a backoff of minutes after TLS failures) are offered again
// as soon as the TLS material is reloaded (reconnect), without waiting for
// the backoff's end: the clock does not move here.
func TestSentiloReconnectOffersPendingAtOnce(t *testing.T) {
	r := newSentiloRig(t)
	defer r.close()
	r.fake.gate = r.clock.Now().Add(5 * time.Minute)
	r.fake.offered = make(chan struct{}, 16)
	seq := r.env(1)
	r.clock.Advance(time.Second) // batch_wait
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.out.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	offered := func(what string) {
		t.Helper()
		select {
		case <-r.fake.offered:
		case <-time.After(10 * time.Second):
			t.Fatalf("no offer %s", what)
		}
	}
	offered("while the gate is closed")
	r.fake.mu.Lock()
	stored := len(r.fake.stored)
	r.fake.mu.Unlock()
	if stored != 0 {
		t.Fatalf("stored %d through a closed gate", stored)
	}
	r.out.reconnect()
	offered("after the reload")
	r.fake.mu.Lock()
	defer r.fake.mu.Unlock()
	if n := r.fake.stored["gw-env-temperature@"+time.Duration(seq).String()]; n != 1 {
		t.Fatalf("after reconnect, with the clock still: stored %v", r.fake.stored)
	}
}
