//go:build linux

package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/jonboulle/clockwork"
)

// mountTmpfs mounts a small tmpfs (root only). It skips the test when that is
// not permitted, and fails it under CITYEDGE_REQUIRE_ROOT=1 (set by CI, which
// runs as root) so the only proof of the disk-full behaviour cannot vanish.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		msg := fmt.Sprintf("cannot mount a %s tmpfs to fill the disk (needs root or CAP_SYS_ADMIN): %v", size, err)
		if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
			t.Fatal(msg + " (CITYEDGE_REQUIRE_ROOT=1)")
		}
		t.Skip("SKIP: " + msg)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull fills a real file system: appends then go to the memory
// ring (oldest dropped, counted), the error is reported, nothing on disk
// is damaged, and everything resumes, in order, once space is freed.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 768<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "buffer.db")
	// The injected clock decides when the committer retries, so the counts
	// below are read between retries, never during one.
	clock := clockwork.NewFakeClock()
	var logs testlog.Buffer
	opts := Options{MaxBytes: 64 << 20, MemoryBytes: 32 << 10, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	q := openT(t, path, opts)

	n := 0
	batch := func() ([]Record, int) {
		recs := make([]Record, 50)
		for i := range recs {
			recs[i] = Record{Key: "air-1", Data: payload("air-1", n+i, 141)}
		}
		start := n
		n += len(recs)
		return recs, start
	}
	durable := map[uint64]bool{}
	var firstFail int = -1
	for tries := 0; firstFail < 0; tries++ {
		if tries > 2000 {
			t.Fatal("the 2 MiB file system never filled up")
		}
		recs, start := batch()
		first, err := q.Append(context.Background(), recs)
		switch {
		case err == nil:
			for i := range recs {
				durable[first+uint64(i)] = true
			}
		case errors.Is(err, ErrNotDurable):
			if !strings.Contains(err.Error(), "no space left on device") {
				t.Errorf("Append error %q does not name the cause", err)
			}
			firstFail = start
		default:
			t.Fatalf("Append: %v", err)
		}
	}
	// Keep sampling while the disk is full: Append must not block or fail
	// hard, and the ring must stay bounded.
	for i := 0; i < 20; i++ {
		recs, _ := batch()
		if _, err := q.Append(context.Background(), recs); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("Append with a full disk = %v, want ErrNotDurable", err)
		}
	}
	st := q.Stats()
	if st.DiskError == "" || st.Memory == 0 {
		t.Errorf("Stats while full: DiskError %q, Memory %d; want both set", st.DiskError, st.Memory)
	}
	ringMax := int(opts.MemoryBytes) / encodedLen("air-1", make([]byte, 141), time.Now(), nil)
	if st.Memory > ringMax {
		t.Errorf("ring holds %d records, bound is %d", st.Memory, ringMax)
	}
	inRingPhase := n - firstFail
	if st.Dropped["air-1"] != uint64(inRingPhase-st.Memory) {
		t.Errorf("Dropped = %d, want %d (appended %d to the ring, %d kept)", st.Dropped["air-1"], inRingPhase-st.Memory, inRingPhase, st.Memory)
	}

	// A retry while the disk is still full keeps the ring as it was.
	clock.Advance(firstRetryDelay)
	waitFor(t, func() bool { return logs.Count("disk still refuses writes") == 1 })
	if st2 := q.Stats(); st2.Memory != st.Memory || st2.Dropped["air-1"] != st.Dropped["air-1"] || st2.DiskError == "" {
		t.Errorf("after a failed retry: Memory %d, Dropped %d, DiskError %q; want %d, %d and the error",
			st2.Memory, st2.Dropped["air-1"], st2.DiskError, st.Memory, st.Dropped["air-1"])
	}
	kept := st.Memory

	// Space returns; the next retry (the delay doubled) writes the ring.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * firstRetryDelay)
	waitFor(t, func() bool { s := q.Stats(); return s.Memory == 0 && s.DiskError == "" })
	got := readAll(t, q)
	for seq := range durable {
		if !containsSeq(got, seq) {
			t.Fatalf("durable seq %d missing after the disk-full episode", seq)
		}
	}
	// After the durable records come exactly the newest `kept` ring records,
	// in order.
	tail := got[len(durable):]
	if len(tail) != kept {
		t.Fatalf("after recovery %d records follow the durable ones, want the %d the ring kept", len(tail), kept)
	}
	for i, e := range tail {
		if want := payload("air-1", n-kept+i, 141); string(e.Data) != string(want) {
			t.Fatalf("ring record %d = %.20q, want %.20q", i, e.Data, want)
		}
	}
	if st := q.Stats(); st.Dropped["air-1"] != uint64(inRingPhase-kept) {
		t.Errorf("Dropped after recovery = %d, want %d", st.Dropped["air-1"], inRingPhase-kept)
	}
	closeT(t, q)

	q = openT(t, path, opts)
	defer closeT(t, q)
	if q.Stats().Salvage != nil {
		t.Error("the file needed salvage after a disk-full episode")
	}
	assertBoltConsistent(t, q)
	if c := q.Stats().Count; c != uint64(len(durable)+kept) {
		t.Errorf("after reopen Count = %d, want %d", c, len(durable)+kept)
	}
	if d := q.Stats().Dropped["air-1"]; d != uint64(inRingPhase-kept) {
		t.Errorf("after reopen Dropped = %d, want %d (ring drops are persisted)", d, inRingPhase-kept)
	}
	t.Logf("durable %d, ring phase %d appended, %d kept, %d dropped", len(durable), inRingPhase, kept, inRingPhase-kept)
}

func containsSeq(es []Entry, seq uint64) bool {
	for _, e := range es {
		if e.Seq == seq {
			return true
		}
	}
	return false
}

// TestStatsCountRingBeingRetried: the records a retry is writing are still
// only in memory, and Stats says so until the retry succeeds. (A status page
// read during a retry used to show them neither held nor dropped.)
func TestStatsCountRingBeingRetried(t *testing.T) {
	clock := clockwork.NewFakeClock()
	q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 1 << 20, Clock: clock})
	defer closeT(t, q)
	q.mu.Lock()
	q.diskErr = errors.New("simulated: no space left on device")
	q.retryAt = clock.Now().Add(time.Hour) // the committer stays idle
	q.mu.Unlock()
	for i := range 3 {
		if _, err := q.Append(context.Background(), []Record{{Key: "air-1", Data: payload("air-1", i, 20)}}); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("Append with a disk error = %v, want ErrNotDurable", err)
		}
	}
	q.mu.Lock()
	w, _, _ := q.takeLocked(q.retryAt) // what the committer does when the retry falls due
	q.mu.Unlock()
	if w == nil || len(w.ring) != 3 {
		t.Fatalf("retry work = %+v, want the 3 ring records", w)
	}
	if _, err := q.Append(context.Background(), []Record{{Key: "air-1", Data: payload("air-1", 3, 20)}}); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Append during the retry = %v, want ErrNotDurable", err)
	}
	if m := q.Stats().Memory; m != 4 {
		t.Errorf("Stats().Memory during the retry = %d, want 4 (3 being written, 1 arrived meanwhile)", m)
	}
	q.commit(w)
	waitFor(t, func() bool { return q.Stats().Memory == 0 })
	if c := q.Stats().Count; c != 4 {
		t.Errorf("after the retry Count = %d, want 4", c)
	}
}
