package buffer

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// sample is a closed buffer file with known content.
type sample struct {
	bytes   []byte
	live    map[uint64][]byte // seq → payload of records still queued
	acked   map[uint64]bool   // acked out of order (may come back after salvage)
	maxSeq  uint64
	dropped map[string]uint64
	epoch   uint64
}

// makeSample writes a file with a multi-level tree, drops (small bound),
// acks at the head and in the middle, and two priorities.
func makeSample(t *testing.T) sample {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sample.db")
	q := openT(t, path, Options{MaxBytes: 1 << 20})
	s := sample{live: map[uint64][]byte{}, acked: map[uint64]bool{}}
	n := 0
	for b := 0; b < 60; b++ {
		recs := make([]Record, 100)
		for i := range recs {
			key, prio := "air-1", uint8(0)
			if n%10 == 0 {
				key, prio = "bay-1", 1
			}
			recs[i] = Record{Key: key, Priority: prio, Data: payload(key, n, 141)}
			n++
		}
		first := appendT(t, q, recs...)
		for i, r := range recs {
			s.live[first+uint64(i)] = r.Data
		}
	}
	all := readAll(t, q)
	for seq := range s.live {
		s.maxSeq = max(s.maxSeq, seq)
	}
	kept := map[uint64][]byte{}
	for _, e := range all {
		kept[e.Seq] = s.live[e.Seq]
	}
	s.live = kept
	var acks []uint64
	for _, e := range all[:300] { // the head: never comes back
		acks = append(acks, e.Seq)
	}
	for _, e := range all[2000:2010] { // out of order
		acks = append(acks, e.Seq)
		s.acked[e.Seq] = true
	}
	if err := q.Ack(acks...); err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		delete(s.live, a)
	}
	st := q.Stats()
	closeT(t, q)
	s.dropped, s.epoch = st.Dropped, st.Epoch
	if st.DroppedTotal == 0 {
		t.Fatal("sample has no drops; make it bigger")
	}
	var err error
	if s.bytes, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := checkFile(bytes.NewReader(s.bytes), int64(len(s.bytes))); err != nil {
		t.Fatalf("the undamaged sample fails the check: %v", err)
	}
	return s
}

func TestCorruptionSalvage(t *testing.T) {
	s := makeSample(t)
	page := os.Getpagesize()
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		damage  func([]byte) []byte
		wantAll bool // every live record must come back
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, false},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)*3/4+123] }, false},
		{"garbage pages in the middle", func(b []byte) []byte {
			copy(b[len(b)/3/page*page:], garbage(3*page))
			return b
		}, false},
		{"zeroed meta page 0", func(b []byte) []byte { clear(b[:page]); return b }, true},
		{"zeroed meta page 1", func(b []byte) []byte { clear(b[page : 2*page]); return b }, true},
		{"zeroed meta pages 0 and 1", func(b []byte) []byte { clear(b[:2*page]); return b }, true},
		{"flipped checksum byte in meta 0", func(b []byte) []byte { b[page-1-page+72] ^= 0xff; return b }, true},
		{"all garbage", func(b []byte) []byte { return garbage(64 << 10) }, false},
		{"a few bytes", func(b []byte) []byte { return garbage(100) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "buffer.db")
			damaged := tc.damage(bytes.Clone(s.bytes))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			q := openT(t, path, Options{MaxBytes: 1 << 20})
			st := q.Stats()
			if st.Salvage == nil {
				t.Fatal("Stats().Salvage is nil after opening a damaged file")
			}
			if !strings.HasPrefix(st.Salvage.MovedTo, path+".corrupt-") {
				t.Errorf("moved to %q, want %s.corrupt-<time>", st.Salvage.MovedTo, path)
			}
			kept, err := os.ReadFile(st.Salvage.MovedTo)
			if err != nil || !bytes.Equal(kept, damaged) {
				t.Errorf("the damaged file was not kept byte for byte at %s (err %v)", st.Salvage.MovedTo, err)
			}
			got := readAll(t, q)
			recovered := 0
			for _, e := range got {
				want, ok := s.live[e.Seq]
				if !ok && !s.acked[e.Seq] {
					t.Fatalf("salvage produced seq %d that was never live (acked at the head, dropped or invented)", e.Seq)
				}
				if ok && !bytes.Equal(e.Data, want) {
					t.Fatalf("seq %d: salvaged payload %q, want %q", e.Seq, e.Data, want)
				}
				if ok {
					recovered++
				}
			}
			if tc.wantAll && recovered != len(s.live) {
				t.Errorf("recovered %d of %d live records", recovered, len(s.live))
			}
			if st.Salvage.Recovered != uint64(len(got)) || st.Count != uint64(len(got)) {
				t.Errorf("report says %d recovered, Count %d, read %d", st.Salvage.Recovered, st.Count, len(got))
			}
			if tc.wantAll {
				for k, n := range s.dropped {
					if st.Dropped[k] != n {
						t.Errorf("drop counter %s = %d after salvage, want %d carried over", k, st.Dropped[k], n)
					}
				}
				if st.Salvage.OldEpoch != s.epoch {
					t.Errorf("old epoch %d, want %d", st.Salvage.OldEpoch, s.epoch)
				}
			}
			if st.Epoch <= s.maxSeq || st.NextSeq <= s.maxSeq {
				t.Errorf("new epoch %d / next seq %d not above the old space (max %d)", st.Epoch, st.NextSeq, s.maxSeq)
			}
			if seq := appendT(t, q, Record{Key: "air-1", Data: []byte("after")}); seq <= s.maxSeq {
				t.Errorf("new record got seq %d, not above %d", seq, s.maxSeq)
			}
			t.Logf("recovered %d of %d live records (read %d)", recovered, len(s.live), len(got))
			closeT(t, q)

			// The rebuilt file is sound, reopens without salvage, and keeps
			// the report.
			again := openT(t, path, Options{MaxBytes: 1 << 20})
			defer closeT(t, again)
			if r := again.Stats().Salvage; r == nil || r.MovedTo != st.Salvage.MovedTo {
				t.Errorf("salvage report after reopen = %+v", r)
			}
			assertBoltConsistent(t, again)
		})
	}
}

// assertBoltConsistent runs bbolt's own consistency check on an open queue
// (safe: the file has passed checkFile).
func assertBoltConsistent(t *testing.T, q *Queue) {
	t.Helper()
	err := q.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Errorf("bbolt check: %v", err)
	}
}

// TestDamagedRecordInSoundTree flips one payload byte: the tree is fine, so
// no salvage, but the record fails its checksum and is skipped and removed.
func TestDamagedRecordInSoundTree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{})
	first := appendT(t, q,
		Record{Key: "a", Data: []byte("first-record-payload")},
		Record{Key: "a", Data: []byte("MARKER-to-be-damaged")},
		Record{Key: "a", Data: []byte("third-record-payload")})
	closeT(t, q)
	b, _ := os.ReadFile(path)
	i := bytes.Index(b, []byte("MARKER"))
	if i < 0 || bytes.Index(b[i+1:], []byte("MARKER")) >= 0 {
		t.Fatal("marker not found exactly once in the file")
	}
	b[i] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	defer closeT(t, q)
	if q.Stats().Salvage != nil {
		t.Error("a damaged record in a sound tree triggered a salvage")
	}
	got := readAll(t, q)
	if len(got) != 2 || got[0].Seq != first || got[1].Seq != first+2 {
		t.Fatalf("read %+v, want the first and third record", got)
	}
	waitFor(t, func() bool { return q.Stats().Count == 2 })
}

func TestErrLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{})
	defer closeT(t, q)
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 300 * time.Millisecond, Logger: quietLog(t)})
	waited := time.Since(start)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another process holds "+path) {
		t.Errorf("error %q does not name the file and the reason", err)
	}
	if waited < 250*time.Millisecond || waited > 5*time.Second {
		t.Errorf("second Open returned after %v, want about the 300ms lock timeout", waited)
	}
	// The holder is unaffected.
	if _, err := q.Append(context.Background(), []Record{{Key: "a"}}); err != nil {
		t.Errorf("holder cannot append after a refused second Open: %v", err)
	}
}
