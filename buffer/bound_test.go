package buffer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestBound fills queues well past MaxBytes and checks the file size after
// every commit, the exact per-key drop counters, and the drop order
// (oldest first, lowest priority first).
func TestBound(t *testing.T) {
	for _, tc := range []struct {
		maxBytes int64
		batch    int
		callers  int // concurrent appenders, grouped within interval
		interval time.Duration
	}{
		{1 << 20, 20, 1, 0},
		{4 << 20, 100, 1, 0},
		{4 << 20, 700, 1, 0}, // appends as large as a whole commit group
		{2 << 20, 7, 8, 2 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("max=%dKiB/batch=%d/callers=%d", tc.maxBytes>>10, tc.batch, tc.callers), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			q := openT(t, path, Options{MaxBytes: tc.maxBytes, CommitInterval: tc.interval})
			page := int64(os.Getpagesize())
			appended := map[string][]uint64{}
			var maxFile int64
			check := func() {
				if fb := q.Stats().FileBytes; fb > maxFile {
					maxFile = fb
				}
			}
			n := 0
			var mu sync.Mutex
			appendBatch := func(keys []string, prio func(string) uint8) {
				var wg sync.WaitGroup
				for c := 0; c < tc.callers; c++ {
					recs := make([]Record, tc.batch)
					for i := range recs {
						k := keys[n%len(keys)]
						recs[i] = Record{Key: k, Priority: prio(k), Data: payload(k, n, 141)}
						n++
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						first := appendT(t, q, recs...)
						mu.Lock()
						defer mu.Unlock()
						for i, r := range recs {
							appended[r.Key] = append(appended[r.Key], first+uint64(i))
						}
					}()
				}
				wg.Wait()
				check()
			}
			prio := func(k string) uint8 {
				if k == "bay-1" {
					return 1
				}
				return 0
			}
			// Phase 1: mostly environmental, 5× the bound.
			mixed := []string{"air-1", "air-2", "air-1", "air-2", "air-1", "air-2", "air-1", "air-2", "air-1", "bay-1"}
			for int64(n)*200 < 5*tc.maxBytes {
				appendBatch(mixed, prio)
			}
			st := q.Stats()
			if st.Dropped["bay-1"] != 0 {
				t.Errorf("occupancy dropped (%d) while environmental records remained", st.Dropped["bay-1"])
			}
			checkExact(t, q, appended)
			// Phase 2: only occupancy, until it has displaced everything.
			for int64(n)*200 < 8*tc.maxBytes {
				appendBatch([]string{"bay-1"}, prio)
			}
			st = checkExact(t, q, appended)
			if st.Dropped["bay-1"] == 0 {
				t.Errorf("phase 2 dropped no occupancy records; the test did not reach the second priority")
			}
			for _, e := range readAll(t, q) {
				if e.Priority == 0 {
					t.Fatalf("environmental record %d survived while occupancy records were dropped", e.Seq)
				}
			}
			if limit := tc.maxBytes + page; maxFile > limit {
				t.Errorf("file reached %d bytes, bound %d + one page = %d", maxFile, tc.maxBytes, limit)
			}
			t.Logf("max file %d B = %.3f × MaxBytes; live %d B (%.0f%%); %d records, %d dropped",
				maxFile, float64(maxFile)/float64(tc.maxBytes), st.Bytes, 100*float64(st.Bytes)/float64(tc.maxBytes), st.Count, st.DroppedTotal)
			closeT(t, q)

			// After all that churn the file is sound by checkFile's strict
			// rules (no false alarm), and the counters are persistent.
			if err := checkFileAt(path); err != nil {
				t.Errorf("file after churn fails the check: %v", err)
			}
			q = openT(t, path, Options{MaxBytes: tc.maxBytes})
			defer closeT(t, q)
			again := q.Stats()
			if again.Salvage != nil {
				t.Errorf("sound file salvaged on reopen: %+v", again.Salvage)
			}
			if again.DroppedTotal != st.DroppedTotal || fmt.Sprint(again.Dropped) != fmt.Sprint(st.Dropped) {
				t.Errorf("after reopen drops = %d %v, want %d %v", again.DroppedTotal, again.Dropped, st.DroppedTotal, st.Dropped)
			}
		})
	}
}

// checkExact verifies that what remains of each key is the newest suffix of
// what was appended and that the drop counter equals the difference.
func checkExact(t *testing.T, q *Queue, appended map[string][]uint64) Stats {
	t.Helper()
	st := q.Stats()
	left := map[string][]uint64{}
	for _, e := range readAll(t, q) {
		left[e.Key] = append(left[e.Key], e.Seq)
	}
	var total uint64
	for k, seqs := range appended {
		slices.Sort(seqs)
		rest := left[k]
		dropped := uint64(len(seqs) - len(rest))
		if st.Dropped[k] != dropped {
			t.Errorf("key %s: Dropped = %d, want exactly %d (appended %d, left %d)", k, st.Dropped[k], dropped, len(seqs), len(rest))
		}
		total += dropped
		for i, s := range rest {
			if want := seqs[int(dropped)+i]; s != want {
				t.Fatalf("key %s: remaining record %d has seq %d, want %d (oldest must go first)", k, i, s, want)
			}
		}
	}
	if st.DroppedTotal != total {
		t.Errorf("DroppedTotal = %d, want %d", st.DroppedTotal, total)
	}
	return st
}

// TestCompaction drains a large backlog and checks that the file shrinks,
// the sequence continues, and the result reopens.
func TestCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{MaxBytes: 64 << 20})
	var last uint64
	for i := 0; i < 400; i++ {
		recs := make([]Record, 100)
		for j := range recs {
			recs[j] = Record{Key: "air-1", Data: payload("air-1", i*100+j, 141)}
		}
		last = appendT(t, q, recs...) + 99
	}
	full := q.Stats().FileBytes
	if full < 4<<20 {
		t.Fatalf("file only %d bytes after 40k records; test needs a big file", full)
	}
	var after uint64
	for {
		es, err := q.ReadAfter(after, 5000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		seqs := make([]uint64, len(es))
		for i, e := range es {
			seqs[i] = e.Seq
		}
		if err := q.Ack(seqs...); err != nil {
			t.Fatal(err)
		}
		after = es[len(es)-1].Seq
	}
	waitFor(t, func() bool { return q.Stats().Count == 0 })
	waitFor(t, func() bool { return q.Stats().FileBytes < 1<<20 })
	if err := checkFileAt(path); err != nil {
		t.Errorf("compacted file fails the check: %v", err)
	}
	if next := appendT(t, q, Record{Key: "air-1", Data: []byte("after")}); next != last+1 {
		t.Errorf("seq after compaction %d, want %d (bucket sequence kept)", next, last+1)
	}
	t.Logf("file %d B full, %d B after draining", full, q.Stats().FileBytes)
	closeT(t, q)
	q = openT(t, path, Options{MaxBytes: 64 << 20})
	defer closeT(t, q)
	if got := readAll(t, q); len(got) != 1 || string(got[0].Data) != "after" {
		t.Errorf("after reopen: %d records", len(got))
	}
	if _, err := q.Append(context.Background(), []Record{{Key: "x"}}); err != nil {
		t.Error(err)
	}
}

func checkFileAt(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkFile(f, fi.Size())
}
