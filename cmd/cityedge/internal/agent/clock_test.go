package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
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

// These tests drive the sampler, the forwarder and the rate limit with a
// fake clock: every wait is checked to the millisecond, in no real time.

type noHardware struct{}

func (noHardware) Target(s config.SensorConfig) (catalog.Target, error) {
	return catalog.Target{Sensor: s.Name}, nil
}
func (noHardware) Close() {}

// scriptSensor answers each Read with the next result of its script, after
// telling the test through reads.
type scriptSensor struct {
	reads  chan<- int
	n      *int
	script func(n int) error
	halts  chan<- struct{}
}

func (s *scriptSensor) Read(context.Context) ([]drivers.Value, error) {
	*s.n++
	s.reads <- *s.n
	if err := s.script(*s.n); err != nil {
		return nil, err
	}
	return []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20)}, nil
}
func (s *scriptSensor) Halt() error    { s.halts <- struct{}{}; return nil }
func (s *scriptSensor) String() string { return "script" }

func testRunner(clk clockwork.Clock, open func() (drivers.Sensor, error)) *sensorRunner {
	return &sensorRunner{
		cfg:    config.SensorConfig{Name: "air-1", Driver: "test", Interval: 10 * time.Second},
		drv:    catalog.Driver{Open: func(catalog.Target, any) (drivers.Sensor, error) { return open() }},
		hw:     noHardware{},
		clock:  clk,
		log:    slog.New(slog.DiscardHandler),
		jitter: func(d time.Duration) time.Duration { return d },
	}
}

func discard(drivers.Reading, buffer.Class) {}

// TestSamplerOpenBackoff: a sensor that cannot be opened is retried after
// 1 s, 2 s, 4 s, ... up to 5 min, and never earlier.
func TestSamplerOpenBackoff(t *testing.T) {
	clk := clockwork.NewFakeClock()
	var opens atomic.Int32
	r := testRunner(clk, func() (drivers.Sensor, error) { opens.Add(1); return nil, errors.New("no chip") })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx, discard); close(done) }()
	defer func() { cancel(); <-done }()

	var ladder []time.Duration
	for d := backoffMin; len(ladder) < 12; d = min(2*d, backoffMax) {
		ladder = append(ladder, d)
	}
	if ladder[8] != 256*time.Second || ladder[9] != backoffMax || ladder[11] != 5*time.Minute {
		t.Fatalf("ladder %v", ladder)
	}
	for i, d := range ladder {
		if err := clk.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if n := opens.Load(); n != int32(i+1) {
			t.Fatalf("attempt %d: %d opens", i+1, n)
		}
		clk.Advance(d - time.Millisecond)
		if n := opens.Load(); n != int32(i+1) {
			t.Fatalf("re-opened before its %v backoff", d)
		}
		clk.Advance(time.Millisecond)
	}
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != int32(len(ladder)+1) {
		t.Fatalf("%d opens after the ladder, want %d", n, len(ladder)+1)
	}
	if st := r.snapshot(); st.Errors != uint64(len(ladder)+1) || st.Open {
		t.Errorf("state %+v", st)
	}
}

// TestSamplerFailLimit: failLimit failed reads in a row halt the sensor; it
// is opened again after the backoff, and a sensor that delivered in between
// starts the ladder again at 1 s.
func TestSamplerFailLimit(t *testing.T) {
	clk := clockwork.NewFakeClock()
	reads := make(chan int)
	halts := make(chan struct{}, 1)
	var opens atomic.Int32
	n := 0
	// Reads 1-3 fail (first session), 4 works, 5-7 fail (second session),
	// 8-10 fail (third session).
	script := func(n int) error {
		if n == 4 {
			return nil
		}
		return errors.New("CRC mismatch")
	}
	r := testRunner(clk, func() (drivers.Sensor, error) {
		opens.Add(1)
		return &scriptSensor{reads: reads, n: &n, script: script, halts: halts}, nil
	})
	var got atomic.Int32
	sink := func(drivers.Reading, buffer.Class) { got.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx, sink); close(done) }()
	defer func() { cancel(); <-done }()

	// session reads the sensor at once, then on every interval tick, until
	// failLimit failures in a row.
	session := func(first int, count int) {
		t.Helper()
		for i := 0; i < count; i++ {
			if i > 0 {
				if err := clk.BlockUntilContext(ctx, 1); err != nil {
					t.Fatal(err)
				}
				clk.Advance(r.cfg.Interval)
			}
			if got := <-reads; got != first+i {
				t.Fatalf("read %d, want %d", got, first+i)
			}
		}
	}
	// reopenAfter checks the sensor is halted and opened again after d.
	reopenAfter := func(d time.Duration, wantOpens int32) {
		t.Helper()
		<-halts // the interval ticker is stopped by now
		if err := clk.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(d - time.Millisecond)
		if o := opens.Load(); o != wantOpens-1 {
			t.Fatalf("re-opened before its %v backoff", d)
		}
		clk.Advance(time.Millisecond)
	}
	session(1, failLimit)
	reopenAfter(backoffMin, 2)
	session(4, 1+failLimit) // one good reading, then failLimit failures
	reopenAfter(backoffMin, 3)
	session(8, failLimit)
	reopenAfter(2*backoffMin, 4)
	// The fourth session's first read is waiting to report itself.
	if got.Load() != 1 {
		t.Errorf("%d readings delivered, want 1", got.Load())
	}
	if st := r.snapshot(); st.Errors != 3*failLimit || st.Readings != 1 {
		t.Errorf("state %+v", st)
	}
	<-reads
}

// memQueue is the forwarder's Queue in memory, with entries stamped by the
// fake clock.
type memQueue struct {
	mu      sync.Mutex
	clock   clockwork.Clock
	entries []buffer.Entry
	next    uint64
	notify  chan struct{}
}

func newMemQueue(clk clockwork.Clock) *memQueue {
	return &memQueue{clock: clk, next: 1, notify: make(chan struct{}, 1)}
}

func (q *memQueue) add(t *testing.T, n int, at time.Time) {
	t.Helper()
	q.mu.Lock()
	for i := 0; i < n; i++ {
		data, err := senml.AppendReading(nil, drivers.Reading{Sensor: "air", Time: at,
			Values: []drivers.Value{{Quantity: "temperature", Unit: "Cel", Num: float64(q.next)}}})
		if err != nil {
			t.Fatal(err)
		}
		q.entries = append(q.entries, buffer.Entry{Seq: q.next, Time: at, Key: "air", Data: data})
		q.next++
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *memQueue) ReadAfter(after uint64, max, _ int) ([]buffer.Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []buffer.Entry
	for _, e := range q.entries {
		if e.Seq > after && len(out) < max {
			out = append(out, e)
		}
	}
	return out, nil
}

func (q *memQueue) Ack(seqs ...uint64) error { return nil }
func (q *memQueue) Notify() <-chan struct{}  { return q.notify }
func (q *memQueue) Stats() buffer.Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return buffer.Stats{Count: uint64(len(q.entries)), NextSeq: q.next}
}

func seqs(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestForwarderChoice: the backlog drains while a partial live batch waits
// for batch_wait; once it is due it goes before the rest of the backlog; a
// full live batch goes at once; with nothing else to send, a partial batch
// goes exactly at batch_wait, or at once when hurried.
func TestForwarderChoice(t *testing.T) {
	clk := clockwork.NewFakeClock()
	q := newMemQueue(clk)
	q.add(t, 25, clk.Now().Add(-time.Hour))
	const batchWait = 5 * time.Second
	f := newForwarder(q, "gw", 10, batchWait, clk, slog.New(slog.DiscardHandler))
	f.Rewind()
	q.add(t, 3, clk.Now()) // live 26..28
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := func(want []uint64) {
		t.Helper()
		b, err := f.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Seqs) != len(want) || b.Seqs[0] != want[0] || b.Seqs[len(b.Seqs)-1] != want[len(want)-1] {
			t.Fatalf("batch %v, want %v", b.Seqs, want)
		}
	}
	next(seqs(1, 10)) // the live part is not due: back-fill
	clk.Advance(batchWait)
	next(seqs(26, 28)) // due: live before the rest of the backlog
	next(seqs(11, 20))
	next(seqs(21, 25))
	q.add(t, 10, clk.Now())
	next(seqs(29, 38)) // a full live batch goes at once

	// A partial batch with nothing else to send goes exactly at batch_wait.
	q.add(t, 2, clk.Now())
	out := make(chan uplink.Batch, 1)
	go func() {
		b, _ := f.Next(ctx)
		out <- b
	}()
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(batchWait - time.Millisecond)
	select {
	case b := <-out:
		t.Fatalf("batch %v went before batch_wait", b.Seqs)
	default:
	}
	clk.Advance(time.Millisecond)
	if b := <-out; len(b.Seqs) != 2 || b.Seqs[0] != 39 {
		t.Fatalf("batch %v, want 39..40", b.Seqs)
	}

	// Hurried (an occupancy change): no wait at all.
	q.add(t, 1, clk.Now())
	f.hurry()
	next([]uint64{41})
}

// TestRateLimit: the token bucket's waits, exactly.
func TestRateLimit(t *testing.T) {
	cases := []struct {
		spec     string
		batches  [][2]int // readings, bytes
		wantWait time.Duration
	}{
		{"100/s", [][2]int{{100, 0}, {100, 0}, {50, 0}}, 1500 * time.Millisecond},
		{"1KiB/s", [][2]int{{1, 1024}, {1, 2048}}, 2 * time.Second},
		{"10/s", [][2]int{{5, 0}}, 0},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			r, err := config.ParseRate(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			clk := clockwork.NewFakeClock()
			l := newRateLimit(r, clk)
			var waited time.Duration
			for _, b := range c.batches {
				d := max(l.reserve(b[0], b[1]), 0)
				waited += d
				clk.Advance(d) // the caller waits it off
			}
			if waited != c.wantWait {
				t.Errorf("waited %v, want %v", waited, c.wantWait)
			}
		})
	}
	if newRateLimit(config.Rate{}, clockwork.NewFakeClock()) != nil {
		t.Error("an unlimited rate made a limiter")
	}

	// wait blocks on the clock for exactly the debt.
	clk := clockwork.NewFakeClock()
	l := newRateLimit(config.Rate{PerSec: 10}, clk)
	done := make(chan error, 1)
	go func() { done <- l.wait(context.Background(), 30, 0) }() // 20 readings of debt: 2 s
	if err := clk.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2*time.Second - time.Millisecond)
	select {
	case <-done:
		t.Fatal("wait returned before the debt was paid")
	default:
	}
	clk.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
