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
		{"garbage over pages in use", func(b []byte) []byte {
			used := pagesInUse(t, b)
			for _, id := range used[len(used)/3 : len(used)/3+3] {
				copy(b[int(id)*page:], garbage(page))
			}
			return b
		}, false},
		{"zeroed meta page 0", func(b []byte) []byte { clear(b[:page]); return b }, true},
		{"zeroed meta page 1", func(b []byte) []byte { clear(b[page : 2*page]); return b }, true},
		{"zeroed meta pages 0 and 1", func(b []byte) []byte { clear(b[:2*page]); return b }, true},
		{"flipped txid byte in meta 0 (checksum mismatch)", func(b []byte) []byte { b[71] ^= 0xff; return b }, true},
		{"meta page 1 header names another page", func(b []byte) []byte { b[page+7] ^= 0x04; return b }, true},
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

// pagesInUse lists the pages the tree of a sound file reaches, in order.
func pagesInUse(t *testing.T, b []byte) []uint64 {
	t.Helper()
	metas, _ := readMetas(bytes.NewReader(b), int64(len(b)))
	m := metas[0]
	if metas[1].txid > m.txid {
		m = metas[1]
	}
	c := &checker{r: bytes.NewReader(b), psz: int64(m.pageSize), hwm: m.hwm, seen: make([]uint64, m.hwm/64+1)}
	if _, _, err := c.walk(m.root, nil, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for id := uint64(2); id < m.hwm; id++ {
		if c.seen[id/64]&(1<<(id%64)) != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestGarbageInFreePages: damage where no tree points is harmless; the
// file is kept as it is.
func TestGarbageInFreePages(t *testing.T) {
	s := makeSample(t)
	page := os.Getpagesize()
	b := bytes.Clone(s.bytes)
	used := map[uint64]bool{}
	for _, id := range pagesInUse(t, b) {
		used[id] = true
	}
	damaged := 0
	for id := 2; (id+1)*page <= len(b); id++ {
		if !used[uint64(id)] {
			for i := id * page; i < (id+1)*page; i++ {
				b[i] = byte(i*31 + 7)
			}
			damaged++
		}
	}
	if damaged == 0 {
		t.Fatal("sample has no free pages")
	}
	path := filepath.Join(t.TempDir(), "buffer.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	q := openT(t, path, Options{MaxBytes: 1 << 20})
	defer closeT(t, q)
	if q.Stats().Salvage != nil {
		t.Errorf("garbage in %d free pages triggered a salvage", damaged)
	}
	if got := readAll(t, q); len(got) != len(s.live) {
		t.Errorf("read %d records, want %d", len(got), len(s.live))
	}
	appendT(t, q, Record{Key: "a", Data: []byte("reuses the free pages")})
	assertBoltConsistent(t, q)
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
	// The live copy, and any stale one in a page a later commit (the
	// close's, say) freed: damage them all.
	if !bytes.Contains(b, []byte("MARKER")) {
		t.Fatal("marker not found in the file")
	}
	for i := bytes.Index(b, []byte("MARKER")); i >= 0; i = bytes.Index(b, []byte("MARKER")) {
		b[i] ^= 0x20
	}
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

// TestDamageWhileRunning damages a page in use under an open queue: the
// reader that trips over it gets an error instead of a crash, the queue
// salvages the file without a restart, and work goes on with the
// sequence numbers kept.
func TestDamageWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{})
	defer closeT(t, q)
	live := map[uint64][]byte{}
	var last uint64
	for b := 0; b < 30; b++ {
		recs := make([]Record, 100)
		for i := range recs {
			recs[i] = Record{Key: "air-1", Data: payload("air-1", b*100+i, 141)}
		}
		first := appendT(t, q, recs...)
		for i, r := range recs {
			live[first+uint64(i)] = r.Data
		}
		last = first + 99
	}
	snapshot, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	used := pagesInUse(t, snapshot)
	victim := used[len(used)/2]
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 16), int64(victim)*int64(page)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if _, err := q.ReadAfter(0, 100000, 0); err == nil {
		t.Fatal("ReadAfter over a damaged page returned no error")
	}
	waitFor(t, func() bool { return q.Stats().Salvage != nil })
	st := q.Stats()
	if _, err := os.Stat(st.Salvage.MovedTo); err != nil {
		t.Errorf("damaged file not kept: %v", err)
	}
	got := readAll(t, q)
	if len(got) == 0 || len(got) >= len(live) {
		t.Errorf("after salvage %d of %d records; want all but those on the damaged page", len(got), len(live))
	}
	for _, e := range got {
		if !bytes.Equal(e.Data, live[e.Seq]) {
			t.Fatalf("seq %d: payload %.20q, want %.20q", e.Seq, e.Data, live[e.Seq])
		}
	}
	if seq := appendT(t, q, Record{Key: "air-1", Data: []byte("after")}); seq <= last {
		t.Errorf("append after salvage got seq %d, not above %d", seq, last)
	}
	if err := q.Ack(got[0].Seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return q.Stats().Count == uint64(len(got)) })
	assertBoltConsistent(t, q)
	t.Logf("page %d damaged: %d of %d records kept", victim, len(got), len(live))
}

// TestCheckFileRejectsEmptyKey: a key of length zero keeps the tree in
// order and passes bbolt's own check, but bbolt's write path asserts on it
// (found by FuzzOpen). checkFile must refuse the file, and Open salvages it.
func TestCheckFileRejectsEmptyKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{})
	var recs []Record
	for i := 0; i < 20; i++ { // one leaf page, too big to be inline
		recs = append(recs, Record{Key: "air-1", Data: payload("air-1", i, 141)})
	}
	appendT(t, q, recs...)
	closeT(t, q)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	patched := false
	for _, id := range pagesInUse(t, b) {
		p := b[int(id)*page : int(id+1)*page]
		if ne.Uint16(p[8:]) == leafPageFlag && ne.Uint16(p[10:]) == 20 && ne.Uint32(p[pageHeaderSize+8:]) == 8 {
			ne.PutUint32(p[pageHeaderSize+8:], 0) // element 0: ksize 0
			patched = true
		}
	}
	if !patched {
		t.Fatal("no data leaf page with 20 records found")
	}
	if err := checkFile(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("checkFile = %v, want an empty-key error", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	defer closeT(t, q)
	if q.Stats().Salvage == nil {
		t.Error("no salvage")
	}
	if n := len(readAll(t, q)); n != 19 {
		t.Errorf("salvaged %d records, want the 19 intact ones", n)
	}
}

// TestCorruptRecordCounted: a record that cannot be decoded while reading
// is counted as corrupt, persistently, so that the gap it leaves in the
// sequence numbers is explained.
func TestCorruptRecordCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{})
	var recs []Record
	for i := range 20 {
		data := payload("air-1", i, 60)
		if i == 7 {
			data = []byte("MARKER-to-be-damaged")
		}
		recs = append(recs, Record{Key: "air-1", Data: data})
	}
	first := appendT(t, q, recs...)
	closeT(t, q)
	b, _ := os.ReadFile(path)
	// The live copy, and any stale one in a page a later commit (the
	// close's, say) freed: damage them all.
	if !bytes.Contains(b, []byte("MARKER")) {
		t.Fatal("marker not found in the file")
	}
	for i := bytes.Index(b, []byte("MARKER")); i >= 0; i = bytes.Index(b, []byte("MARKER")) {
		b[i] ^= 0x20
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	if st := q.Stats(); st.Corrupt != 0 || st.Salvage != nil {
		t.Fatalf("before reading: corrupt %d, salvage %v", st.Corrupt, st.Salvage)
	}
	got := readAll(t, q)
	if len(got) != 19 {
		t.Fatalf("read %d records, want 19", len(got))
	}
	waitFor(t, func() bool { return q.Stats().Corrupt == 1 && q.Stats().Count == 19 })
	readAll(t, q) // read again: the same record is not counted twice
	closeT(t, q)
	q = openT(t, path, Options{})
	defer closeT(t, q)
	st := q.Stats()
	if st.Corrupt != 1 || st.DroppedTotal != 0 {
		t.Fatalf("after reopen: corrupt %d dropped %d, want 1 and 0", st.Corrupt, st.DroppedTotal)
	}
	// Every gap in seq is explained by the counters.
	got = readAll(t, q)
	gaps := uint64(0)
	prev := first - 1
	for _, e := range got {
		gaps += e.Seq - prev - 1
		prev = e.Seq
	}
	if gaps != st.Corrupt+st.DroppedTotal {
		t.Errorf("%d gaps in seq, counters explain %d", gaps, st.Corrupt+st.DroppedTotal)
	}
}
