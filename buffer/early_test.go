package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// appendAsync appends rec and returns the channel Append's result comes on.
func appendAsync(q *Queue, rec Record) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := q.Append(context.Background(), []Record{rec})
		done <- err
	}()
	return done
}

// readOne waits until ReadAfter(after) returns a record and returns it.
func readOne(t *testing.T, q *Queue, after uint64) Entry {
	t.Helper()
	var es []Entry
	waitFor(t, func() bool {
		var err error
		es, err = q.ReadAfter(after, 10, 0)
		return err == nil && len(es) > 0
	})
	return es[0]
}

// TestAckBeforeCommit: a record is readable before its commit; acknowledged
// before its commit fell due, it is never written, its Append returns nil,
// and its number is never handed out again.
func TestAckBeforeCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	clock := clockwork.NewFakeClock()
	q := openT(t, path, Options{CommitInterval: time.Second, Clock: clock})
	done := appendAsync(q, Record{Key: "air-1", Data: []byte("sent before written")})
	e := readOne(t, q, 0)
	if string(e.Data) != "sent before written" || e.Key != "air-1" {
		t.Fatalf("read %q from %q", e.Data, e.Key)
	}
	if st := q.Stats(); st.Count != 1 || st.Commits != 0 {
		t.Fatalf("before the ack: count %d commits %d; want 1 queued, none committed", st.Count, st.Commits)
	}
	if err := q.Ack(e.Seq); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Append after its record was acknowledged: %v", err)
	}
	clock.Advance(time.Hour)
	if es, err := q.ReadAfter(0, 10, 0); err != nil || len(es) != 0 {
		t.Fatalf("ReadAfter after the ack = %d records, %v", len(es), err)
	}
	if st := q.Stats(); st.Count != 0 || st.Commits != 0 {
		t.Fatalf("after the ack: count %d commits %d; want nothing queued and nothing written", st.Count, st.Commits)
	}
	closeT(t, q)
	q = openT(t, path, Options{})
	defer closeT(t, q)
	if st := q.Stats(); st.Count != 0 {
		t.Fatalf("after reopening: %d records; the acknowledged one was written", st.Count)
	}
	if n := appendT(t, q, Record{Key: "air-1", Data: []byte("next")}); n <= e.Seq {
		t.Fatalf("next record got seq %d, not above the acknowledged %d", n, e.Seq)
	}
}

// TestCommitDeadlines: an environmental record not acknowledged is written
// CommitInterval after its Append, an occupancy change OccupancyWindow
// after, exactly (by the injected clock).
func TestCommitDeadlines(t *testing.T) {
	for _, tc := range []struct {
		class Class
		wait  time.Duration
	}{
		{ClassEnvironmental, 2 * time.Second},
		{ClassOccupancy, OccupancyWindow},
	} {
		t.Run(map[Class]string{ClassEnvironmental: "environmental", ClassOccupancy: "occupancy"}[tc.class], func(t *testing.T) {
			clock := clockwork.NewFakeClock()
			q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{CommitInterval: 2 * time.Second, Clock: clock})
			defer closeT(t, q)
			done := appendAsync(q, Record{Key: "k", Priority: tc.class, Data: []byte("x")})
			readOne(t, q, 0)
			if err := clock.BlockUntilContext(context.Background(), 1); err != nil { // the committer's timer
				t.Fatal(err)
			}
			clock.Advance(tc.wait - time.Millisecond)
			select {
			case err := <-done:
				t.Fatalf("Append returned (%v) %v before its deadline", err, tc.wait)
			case <-time.After(50 * time.Millisecond):
			}
			if c := q.Stats().Commits; c != 0 {
				t.Fatalf("%d commits before the deadline", c)
			}
			clock.Advance(time.Millisecond)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if c := q.Stats().Commits; c != 1 {
				t.Fatalf("%d commits at the deadline, want 1", c)
			}
		})
	}
}

// TestReservedAfterCrash: a file left by a run that never closed (a copy
// taken while it runs) continues above every number that run could have
// handed to a reader, so a receiver never sees a number twice.
func TestReservedAfterCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	q := openT(t, path, Options{CommitInterval: time.Hour})
	defer closeT(t, q)
	done := appendAsync(q, Record{Key: "air-1", Data: []byte("read, never written")})
	e := readOne(t, q, 0)
	if err := q.Ack(e.Seq); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path) // what a power cut would leave
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, crashed, Options{})
	defer closeT(t, q2)
	if n := appendT(t, q2, Record{Key: "air-1", Data: []byte("after the crash")}); n <= e.Seq {
		t.Fatalf("after the crash a record got seq %d, not above %d which a reader had", n, e.Seq)
	}
}
