package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/jonboulle/clockwork"
)

func openTestQueue(t *testing.T) *buffer.Queue {
	t.Helper()
	q, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func appendReadings(t *testing.T, q *buffer.Queue, sensor string, n int, at time.Time) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 0; i < n; i++ {
		data, err := senml.AppendReading(nil, drivers.Reading{Sensor: sensor, Time: at.Add(time.Duration(i) * time.Millisecond),
			Values: []drivers.Value{{Quantity: "temperature", Unit: "Cel", Num: float64(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		seq, err := q.Append(context.Background(), []buffer.Record{{Key: sensor, Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func packSeqs(t *testing.T, payload []byte) []uint64 {
	t.Helper()
	var recs []struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(payload, &recs); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

// TestForwarderLiveFirst: after a reconnect, readings taken since go first;
// the backlog follows in seq order, and nothing is handed out twice within a
// session or lost across one.
func TestForwarderLiveFirst(t *testing.T) {
	q := openTestQueue(t)
	old := appendReadings(t, q, "backlog", 25, time.Now().Add(-time.Hour))
	f := newForwarder(q, "gw", 10, time.Hour, clockwork.NewRealClock(), slog.Default())
	f.Rewind() // session starts: the 25 are backlog
	live := appendReadings(t, q, "live", 10, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var got [][]uint64
	for i := 0; i < 4; i++ {
		b, err := f.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := packSeqs(t, b.Payload); len(s) != len(b.Seqs) {
			t.Fatalf("payload carries %d records, batch %d seqs", len(s), len(b.Seqs))
		}
		got = append(got, b.Seqs)
	}
	if len(got[0]) != 10 || got[0][0] != live[0] {
		t.Fatalf("first batch %v, want the 10 live readings %v", got[0], live)
	}
	want := old
	var backlog []uint64
	for _, g := range got[1:] {
		backlog = append(backlog, g...)
	}
	if len(backlog) != len(want) {
		t.Fatalf("backlog batches %v, want %v", got[1:], want)
	}
	for i := range want {
		if backlog[i] != want[i] {
			t.Fatalf("backlog out of order: %v", backlog)
		}
	}
	// Ack only the first live batch, then reconnect: the rest comes again.
	if err := f.Acked(uplink.Batch{Seqs: got[0]}); err != nil {
		t.Fatal(err)
	}
	f.Rewind()
	var again []uint64
	for i := 0; i < 3; i++ {
		b, err := f.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		again = append(again, b.Seqs...)
	}
	if len(again) != 25 || again[0] != old[0] {
		t.Fatalf("after rewind got %v, want the 25 unacked backlog readings", again)
	}
}

// TestForwarderBatchWaitAndHurry: a partial live batch waits batch_wait,
// unless an occupancy change hurries it.
func TestForwarderBatchWaitAndHurry(t *testing.T) {
	q := openTestQueue(t)
	f := newForwarder(q, "gw", 100, time.Hour, clockwork.NewRealClock(), slog.Default())
	f.Rewind()
	appendReadings(t, q, "air", 3, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if b, err := f.Next(ctx); err == nil {
		t.Fatalf("a partial batch went out before batch_wait: %v", b.Seqs)
	}
	f.hurry()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	b, err := f.Next(ctx2)
	if err != nil || len(b.Seqs) != 3 {
		t.Fatalf("hurried batch = %v, %v; want the 3 readings at once", b.Seqs, err)
	}
}

// TestForwarderDropsDamagedEntries: an entry that cannot be decoded is
// deleted and reported, and its neighbours still go out.
func TestForwarderDropsDamagedEntries(t *testing.T) {
	q := openTestQueue(t)
	good := appendReadings(t, q, "air", 2, time.Now().Add(-time.Minute))
	bad, err := q.Append(context.Background(), []buffer.Record{{Key: "air", Data: []byte{0xff, 1, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder(q, "gw", 100, 0, clockwork.NewRealClock(), slog.New(slog.DiscardHandler))
	f.Rewind()
	b, err := f.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Seqs) != 2 || b.Seqs[0] != good[0] || b.Seqs[1] != good[1] {
		t.Fatalf("batch %v, want %v", b.Seqs, good)
	}
	es, _ := q.ReadAfter(good[1], 10, 1<<20)
	for _, e := range es {
		if e.Seq == bad {
			t.Fatal("damaged entry was not deleted")
		}
	}
}

// countingQueue counts the forwarder's reads.
type countingQueue struct {
	*buffer.Queue
	reads atomic.Int64
}

func (c *countingQueue) ReadAfter(after uint64, max, maxBytes int) ([]buffer.Entry, error) {
	c.reads.Add(1)
	return c.Queue.ReadAfter(after, max, maxBytes)
}

func (c *countingQueue) ReadInto(s *buffer.Scratch, after uint64, max, maxBytes int) ([]buffer.Entry, error) {
	c.reads.Add(1)
	return c.Queue.ReadInto(s, after, max, maxBytes)
}

// TestForwarderIdleReads: the forwarder reads the buffer when something
// can have changed, not in a loop. A hurry request whose occupancy reading
// already went out used to make Next spin on bbolt until the next reading,
// and during a back-fill every batch also read the (empty) live part.
func TestForwarderIdleReads(t *testing.T) {
	cases := []struct {
		name     string
		backlog  int
		hurry    bool
		maxReads int64
	}{
		// One live read; nothing comes, so Next waits for a notification.
		{"idle", 0, false, 3},
		{"hurried with nothing live", 0, true, 3},
		// 30 batches of backlog: one backlog read each, one live read, one
		// read that finds the backlog's end.
		{"back-fill", 300, false, 30 + 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := &countingQueue{Queue: openTestQueue(t)}
			if tc.backlog > 0 {
				appendReadings(t, q.Queue, "old", tc.backlog, time.Now().Add(-time.Hour))
			}
			f := newForwarder(q, "gw", 10, time.Hour, clockwork.NewRealClock(), slog.New(slog.DiscardHandler))
			f.Rewind()
			if tc.hurry {
				f.hurry()
			}
			got := 0
			for got < tc.backlog {
				b, err := f.Next(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				got += len(b.Seqs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if b, err := f.Next(ctx); err == nil {
				t.Fatalf("Next returned %v with nothing to send", b.Seqs)
			}
			if n := q.reads.Load(); n > tc.maxReads {
				t.Errorf("%d reads, want at most %d", n, tc.maxReads)
			}
		})
	}
}
