package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// quietLog keeps expected Error/Warn lines (salvage, drops) out of test
// output unless -v.
func quietLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openT(t testing.TB, path string, opts Options) *Queue {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLog(t)
	}
	q, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return q
}

func closeT(t testing.TB, q *Queue) {
	t.Helper()
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// payload is a deterministic record body of n bytes naming its key and index.
func payload(key string, i, n int) []byte {
	b := []byte(fmt.Sprintf("%s#%08d|", key, i))
	for len(b) < n {
		b = append(b, byte('a'+(len(b)+i)%26))
	}
	return b[:n]
}

func appendT(t testing.TB, q *Queue, recs ...Record) uint64 {
	t.Helper()
	first, err := q.Append(context.Background(), recs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return first
}

func readAll(t testing.TB, q *Queue) []Entry {
	t.Helper()
	var out []Entry
	var after uint64
	for {
		es, err := q.ReadAfter(after, 1000, 0)
		if err != nil {
			t.Fatalf("ReadAfter(%d): %v", after, err)
		}
		if len(es) == 0 {
			return out
		}
		out = append(out, es...)
		after = es[len(es)-1].Seq
	}
}

func TestRoundTripOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		prios    []uint8
	}{
		{"commit at once, one priority", 0, []uint8{0}},
		{"grouped, mixed priorities", 20 * time.Millisecond, []uint8{0, 1, 0, 3, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{CommitInterval: tc.interval})
			defer closeT(t, q)
			before := time.Now().Add(-time.Millisecond)
			var want []Record
			var firsts []uint64
			for batch := 0; batch < 5; batch++ {
				var recs []Record
				for i := 0; i < 7; i++ {
					n := batch*7 + i
					key := fmt.Sprintf("s%d", n%3)
					recs = append(recs, Record{Key: key, Priority: tc.prios[n%len(tc.prios)], Data: payload(key, n, 20+n)})
				}
				firsts = append(firsts, appendT(t, q, recs...))
				want = append(want, recs...)
			}
			after := time.Now().Add(time.Millisecond)
			got := readAll(t, q)
			if len(got) != len(want) {
				t.Fatalf("read %d records, appended %d", len(got), len(want))
			}
			for i, e := range got {
				if i > 0 && e.Seq != got[i-1].Seq+1 {
					t.Errorf("record %d: seq %d after %d, want consecutive", i, e.Seq, got[i-1].Seq)
				}
				if e.Key != want[i].Key || e.Priority != want[i].Priority || !bytes.Equal(e.Data, want[i].Data) {
					t.Errorf("record %d = {%q %d %q}, want {%q %d %q}", i, e.Key, e.Priority, e.Data, want[i].Key, want[i].Priority, want[i].Data)
				}
				if e.Time.Before(before.Truncate(time.Millisecond)) || e.Time.After(after) {
					t.Errorf("record %d time %v outside [%v, %v]", i, e.Time, before, after)
				}
			}
			for b, f := range firsts {
				if f != got[b*7].Seq {
					t.Errorf("Append %d returned first=%d, record has seq %d", b, f, got[b*7].Seq)
				}
			}
			st := q.Stats()
			if st.Count != uint64(len(want)) || st.OldestSeq != got[0].Seq || st.NextSeq != got[len(got)-1].Seq+1 {
				t.Errorf("Stats = count %d oldest %d next %d; want %d %d %d", st.Count, st.OldestSeq, st.NextSeq, len(want), got[0].Seq, got[len(got)-1].Seq+1)
			}
			if st.OldestTime.IsZero() || st.OldestTime.After(after) {
				t.Errorf("Stats.OldestTime = %v", st.OldestTime)
			}
		})
	}
}

func TestReadAfterLimits(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	defer closeT(t, q)
	var recs []Record
	for i := 0; i < 10; i++ {
		recs = append(recs, Record{Key: "k", Data: payload("k", i, 100)})
	}
	first := appendT(t, q, recs...)
	for _, tc := range []struct {
		name            string
		after           uint64
		max, maxBytes   int
		wantN           int
		wantFirstOffset uint64
	}{
		{"max count", 0, 3, 0, 3, 0},
		{"byte limit", 0, 100, 250, 2, 0},
		{"one record even if larger than the byte limit", 0, 100, 10, 1, 0},
		{"after skips", first + 4, 100, 0, 5, 5},
		{"after the end", first + 9, 100, 0, 0, 0},
		{"zero max", 0, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := q.ReadAfter(tc.after, tc.max, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != tc.wantN {
				t.Fatalf("got %d entries, want %d", len(es), tc.wantN)
			}
			if len(es) > 0 && es[0].Seq != first+tc.wantFirstOffset {
				t.Errorf("first seq %d, want %d", es[0].Seq, first+tc.wantFirstOffset)
			}
		})
	}
}

func TestAckAndPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{CommitInterval: 50 * time.Millisecond})
	var recs []Record
	for i := 0; i < 20; i++ {
		recs = append(recs, Record{Key: "air-1", Data: payload("air-1", i, 50)})
	}
	first := appendT(t, q, recs...)
	epoch := q.Stats().Epoch

	acked := []uint64{first, first + 1, first + 5, first + 19, first + 1000 /* unknown: ignored */}
	if err := q.Ack(acked...); err != nil {
		t.Fatal(err)
	}
	// Skipped at once, before the delete is committed.
	got := readAll(t, q)
	if len(got) != 16 {
		t.Fatalf("after Ack read %d records, want 16", len(got))
	}
	for _, e := range got {
		if slices.Contains(acked, e.Seq) {
			t.Errorf("acked seq %d still returned", e.Seq)
		}
	}
	closeT(t, q)

	q = openT(t, path, Options{})
	defer closeT(t, q)
	again := readAll(t, q)
	if !slices.EqualFunc(got, again, func(a, b Entry) bool { return a.Seq == b.Seq && bytes.Equal(a.Data, b.Data) }) {
		t.Fatalf("after reopen the queue differs: %d vs %d records", len(again), len(got))
	}
	st := q.Stats()
	if st.Epoch != epoch || st.Count != 16 || st.NextSeq != first+20 {
		t.Errorf("after reopen Stats = epoch %d count %d next %d; want %d 16 %d", st.Epoch, st.Count, st.NextSeq, epoch, first+20)
	}
	wantBytes := int64(0)
	for _, e := range again {
		wantBytes += int64(elemOverhead + encodedLen(e.Key, e.Data, e.Time, e.Boot))
	}
	if st.Bytes != wantBytes {
		t.Errorf("live bytes %d, want %d", st.Bytes, wantBytes)
	}
	if next := appendT(t, q, Record{Key: "air-1", Data: []byte("x")}); next != first+20 {
		t.Errorf("first append after reopen got seq %d, want %d", next, first+20)
	}
}

func TestSequenceSpaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "buffer.db")
	start := time.Now()
	q := openT(t, path, Options{})
	st := q.Stats()
	if st.Epoch < uint64(start.UnixMicro()) || st.Epoch > uint64(time.Now().UnixMicro()) {
		t.Errorf("new file epoch %d is not the current time in µs (%d)", st.Epoch, start.UnixMicro())
	}
	first := appendT(t, q, Record{Key: "a", Data: []byte("1")}, Record{Key: "a", Data: []byte("2")})
	if first != st.Epoch+1 {
		t.Errorf("first seq %d, want epoch+1 = %d", first, st.Epoch+1)
	}
	if first >= seqLimit {
		t.Errorf("seq %d not below 2^53", first)
	}
	closeT(t, q)

	// The file is lost (deleted by hand): the new space still lies above.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	defer closeT(t, q)
	st2 := q.Stats()
	if st2.Epoch <= first+1 || st2.NextSeq <= first+1 {
		t.Errorf("replacement file epoch %d / next %d not above the old space (last %d)", st2.Epoch, st2.NextSeq, first+1)
	}
	if clockSeqBase(time.Unix(0, 0)) != seqFloor {
		t.Errorf("clock at 1970 gives base %d, want the floor %d", clockSeqBase(time.Unix(0, 0)), seqFloor)
	}
}

func TestGroupCommit(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{CommitInterval: 200 * time.Millisecond})
	defer closeT(t, q)
	const callers, per = 40, 5
	var wg sync.WaitGroup
	firsts := make([]uint64, callers)
	start := make(chan struct{})
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			<-start
			var recs []Record
			for i := 0; i < per; i++ {
				recs = append(recs, Record{Key: fmt.Sprintf("c%d", c), Data: payload("c", c*per+i, 30)})
			}
			first, err := q.Append(context.Background(), recs)
			if err != nil {
				t.Errorf("caller %d: %v", c, err)
			}
			firsts[c] = first
		}(c)
	}
	before := q.Stats().Commits
	close(start)
	wg.Wait()
	commits := q.Stats().Commits - before
	// 40 concurrent callers inside one 200 ms window: one transaction,
	// allowing one extra if the scheduler straddles the window.
	if commits > 2 {
		t.Errorf("%d concurrent appends took %d commits, want them grouped into 1-2", callers, commits)
	}
	got := readAll(t, q)
	if len(got) != callers*per {
		t.Fatalf("read %d records, want %d", len(got), callers*per)
	}
	bySeq := map[uint64]Entry{}
	for _, e := range got {
		bySeq[e.Seq] = e
	}
	for c, f := range firsts {
		for i := 0; i < per; i++ {
			e, ok := bySeq[f+uint64(i)]
			if !ok || e.Key != fmt.Sprintf("c%d", c) {
				t.Errorf("caller %d record %d: seq %d holds %q, want consecutive seqs of its own", c, i, f+uint64(i), e.Key)
			}
		}
	}
}

func TestNotify(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{})
	defer closeT(t, q)
	select {
	case <-q.Notify():
		t.Fatal("notified before any append")
	default:
	}
	appendT(t, q, Record{Key: "a", Data: []byte("x")})
	select {
	case <-q.Notify():
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after an append")
	}
	if err := q.Ack(q.Stats().OldestSeq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return q.Stats().Count == 0 })
	select {
	case <-q.Notify():
		t.Fatal("notified after a commit that only deleted")
	default:
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAppendInput(t *testing.T) {
	q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 1 << 20})
	for _, tc := range []struct {
		name    string
		recs    []Record
		wantErr string
	}{
		{"key too long", []Record{{Key: strings.Repeat("k", 300)}}, "longer than 255"},
		{"record too big for the bound", []Record{{Key: "big", Data: make([]byte, 300<<10)}}, `key "big"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := q.Append(context.Background(), tc.recs)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Append error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Append(ctx, []Record{{Key: "a"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context = %v, want context.Canceled", err)
	}
	if n, err := q.Append(context.Background(), nil); n != 0 || err != nil {
		t.Errorf("Append(nil) = %d, %v", n, err)
	}
	closeT(t, q)
	if _, err := q.Append(context.Background(), []Record{{Key: "a"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := q.Ack(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack after Close = %v, want ErrClosed", err)
	}
	if _, err := q.ReadAfter(0, 10, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAfter after Close = %v, want ErrClosed", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "b.db"), Options{MaxBytes: 1000}); err == nil || !strings.Contains(err.Error(), "below the minimum") {
		t.Errorf("Open with MaxBytes 1000 = %v, want a minimum error", err)
	}
}

func TestCloseCommitsPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{CommitInterval: time.Hour})
	done := make(chan uint64)
	go func() {
		first, err := q.Append(context.Background(), []Record{{Key: "a", Data: []byte("pending")}})
		if err != nil {
			t.Errorf("Append: %v", err)
		}
		done <- first
	}()
	waitFor(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return len(q.reqs) == 1 })
	closeT(t, q)
	first := <-done
	q = openT(t, path, Options{})
	defer closeT(t, q)
	got := readAll(t, q)
	if len(got) != 1 || got[0].Seq != first || string(got[0].Data) != "pending" {
		t.Errorf("after Close and reopen: %+v, want the pending record with seq %d", got, first)
	}
}

func TestForeignFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	writeForeignBolt(t, path)
	before, _ := os.ReadFile(path)
	_, err := Open(path, Options{Logger: quietLog(t)})
	if err == nil || !strings.Contains(err.Error(), "not a cityedge buffer") {
		t.Fatalf("Open(foreign bbolt file) = %v, want a refusal", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("a foreign file was modified")
	}
}

// TestAckDeletes: a commit deletes exactly the acked records, whatever the
// pattern of acks across priorities and leaf pages, and the count and live
// bytes follow, before and after a reopen.
func TestAckDeletes(t *testing.T) {
	const n = 3000 // about a hundred leaf pages
	cases := []struct {
		name  string
		prios []uint8
		acked func(i int) bool // by append index
		extra []uint64         // offsets past the end: unknown seqs, ignored
	}{
		{"all", []uint8{0}, func(int) bool { return true }, nil},
		{"none but unknown", []uint8{0}, func(int) bool { return false }, []uint64{1, 5000}},
		{"first half", []uint8{0}, func(i int) bool { return i < n/2 }, nil},
		{"runs of 100 with gaps", []uint8{0}, func(i int) bool { return i%150 < 100 }, []uint64{7}},
		{"every other", []uint8{0}, func(i int) bool { return i%2 == 0 }, nil},
		{"ends only", []uint8{0}, func(i int) bool { return i == 0 || i == n-1 }, nil},
		{"two priorities interleaved", []uint8{0, 1}, func(i int) bool { return i%7 != 3 }, nil},
		{"three priorities, one acked", []uint8{0, 1, 2}, func(i int) bool { return i%3 == 1 }, []uint64{2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			q := openT(t, path, Options{})
			recs := make([]Record, n)
			for i := range recs {
				recs[i] = Record{Key: fmt.Sprintf("s%d", i%5), Priority: tc.prios[i%len(tc.prios)], Data: payload("s", i, 100)}
			}
			first := appendT(t, q, recs...)
			var acks, want []uint64
			for i := range recs {
				if tc.acked(i) {
					acks = append(acks, first+uint64(i))
				} else {
					want = append(want, first+uint64(i))
				}
			}
			for _, off := range tc.extra {
				acks = append(acks, first+n+off)
			}
			// In several calls, in reverse order, one seq twice.
			rev := slices.Clone(acks)
			slices.Reverse(rev)
			for len(rev) > 0 {
				k := min(len(rev), 777)
				if err := q.Ack(rev[:k]...); err != nil {
					t.Fatal(err)
				}
				rev = rev[k:]
			}
			if len(acks) > 0 {
				if err := q.Ack(acks[0]); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, func() bool { return q.Stats().Count == uint64(len(want)) })
			check := func(q *Queue, when string) {
				t.Helper()
				got := readAll(t, q)
				seqs := make([]uint64, len(got))
				var wantBytes int64
				for i, e := range got {
					seqs[i] = e.Seq
					wantBytes += int64(elemOverhead + encodedLen(e.Key, e.Data, e.Time, e.Boot))
					if j := int(e.Seq - first); !bytes.Equal(e.Data, recs[j].Data) || e.Priority != recs[j].Priority {
						t.Fatalf("%s: seq %d holds another record", when, e.Seq)
					}
				}
				if !slices.Equal(seqs, want) {
					t.Fatalf("%s: %d records left, want %d (first difference near %v)", when, len(seqs), len(want), firstDiff(seqs, want))
				}
				if st := q.Stats(); st.Count != uint64(len(want)) || st.Bytes != wantBytes {
					t.Errorf("%s: Stats count %d bytes %d, want %d %d", when, st.Count, st.Bytes, len(want), wantBytes)
				}
			}
			check(q, "after commit")
			closeT(t, q)
			q = openT(t, path, Options{})
			defer closeT(t, q)
			check(q, "after reopen")
		})
	}
}

func firstDiff(a, b []uint64) []uint64 {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return []uint64{a[i], b[i]}
		}
	}
	return nil
}

// TestAckGroupCommitsEarly: a drain acknowledges faster than one commit
// interval can gather without holding tens of thousands of deletes in one
// transaction; a full ack group is committed without waiting for the
// interval, a partial one waits for it.
func TestAckGroupCommitsEarly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{MaxBytes: 64 << 20})
	recs := make([]Record, ackGroupMax+100)
	for i := range recs {
		recs[i] = Record{Key: "air-1", Data: payload("air-1", i, 60)}
	}
	first := appendT(t, q, recs...)
	closeT(t, q)

	// An interval no test waits for: only a full group can commit.
	q = openT(t, path, Options{MaxBytes: 64 << 20, CommitInterval: time.Hour})
	defer closeT(t, q)
	seqs := make([]uint64, len(recs))
	for i := range seqs {
		seqs[i] = first + uint64(i)
	}
	if err := q.Ack(seqs[:ackGroupMax-1]...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if c := q.Stats().Commits; c != 0 {
		t.Fatalf("%d acks, one short of a group, were committed (%d commits) before the interval", ackGroupMax-1, c)
	}
	if err := q.Ack(seqs[ackGroupMax-1:]...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return q.Stats().Count == 0 })
}
