package buffer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SalvageReport describes the rebuild of a buffer file that could not be
// trusted at Open. It is stored in the new file, so it stays visible in
// Stats after restarts until that file is itself replaced.
type SalvageReport struct {
	Time      time.Time `json:"time"`      // when the damaged file was found
	Reason    string    `json:"reason"`    // what was wrong with it
	MovedTo   string    `json:"moved_to"`  // where the damaged file now lies (never deleted)
	Recovered uint64    `json:"recovered"` // records copied into the new file
	OldEpoch  uint64    `json:"old_epoch"` // epoch of the damaged file, 0 if unreadable
}

// scanFacts is what a page scan learns from the bookkeeping of a damaged
// file. Every counter kept there only grows, so the largest value seen in
// any copy of a page (current, stale or half-written) is the latest one.
type scanFacts struct {
	pageSize int
	low      uint64 // low-water mark: all records below it were acked or dropped
	lastSeq  uint64 // largest sequence the file had handed out
	epoch    uint64
	dropped  uint64
	corrupt  uint64
	drops    map[string]uint64
	records  int // records with a valid checksum, at any sequence
}

// scanPages calls fn for every element of every page of r that looks like a
// leaf page at its own position (header id equal to its page number),
// including the elements of inline buckets. It reads all pages, not only
// those a valid tree reaches: after damage the tree may be gone while its
// leaves are intact. fn's slices are only valid during the call.
func scanPages(r io.ReaderAt, size int64, psz int, fn func(k, v []byte, bucket bool)) {
	const maxSpanPages = 1024 // a record never spans more; bigger claims are garbage
	buf := make([]byte, psz)
	for id := int64(2); id*int64(psz) < size; id++ {
		n, _ := r.ReadAt(buf, id*int64(psz))
		b := buf[:n]
		if n < pageHeaderSize || ne.Uint64(b) != uint64(id) || ne.Uint16(b[8:]) != leafPageFlag {
			continue
		}
		if over := int64(ne.Uint32(b[12:])); over > 0 && over < maxSpanPages {
			big := make([]byte, (over+1)*int64(psz))
			m, _ := r.ReadAt(big, id*int64(psz))
			b = big[:m]
		}
		scanLeaf(b, fn, 0)
	}
}

func scanLeaf(b []byte, fn func(k, v []byte, bucket bool), depth int) {
	if len(b) < pageHeaderSize || depth > 2 {
		return
	}
	n := uint64(ne.Uint16(b[10:]))
	for i := uint64(0); i < n; i++ {
		e := pageHeaderSize + i*elemSize
		if e+elemSize > uint64(len(b)) {
			return
		}
		ksize := uint64(ne.Uint32(b[e+8:]))
		kv, ok := span(b, e+uint64(ne.Uint32(b[e+4:])), ksize+uint64(ne.Uint32(b[e+12:])))
		if !ok {
			continue
		}
		k, v := kv[:ksize], kv[ksize:]
		isBucket := ne.Uint32(b[e:])&bucketLeafFlag != 0
		fn(k, v, isBucket)
		if isBucket && len(v) >= bucketHdrSize+pageHeaderSize && ne.Uint64(v) == 0 &&
			ne.Uint16(v[bucketHdrSize+8:]) == leafPageFlag {
			scanLeaf(v[bucketHdrSize:], fn, depth+1)
		}
	}
}

// gatherFacts scans r once for bookkeeping and counts intact records.
func gatherFacts(r io.ReaderAt, size int64, psz int) scanFacts {
	f := scanFacts{pageSize: psz, drops: map[string]uint64{}}
	scanPages(r, size, psz, func(k, v []byte, bucket bool) {
		if bucket {
			if string(k) == string(bucketMeta) && len(v) >= bucketHdrSize {
				f.lastSeq = max(f.lastSeq, ne.Uint64(v[8:]))
			}
			return
		}
		if len(k) == 8 {
			if _, err := decodeRecord(v); err == nil {
				f.records++
				f.lastSeq = max(f.lastSeq, keySeq(k))
			}
			return
		}
		if len(v) != 8 {
			return
		}
		u := binary.BigEndian.Uint64(v)
		switch ks := string(k); {
		case ks == string(keyLow):
			f.low = max(f.low, u)
		case ks == string(keyReserved) && u < seqLimit:
			f.lastSeq = max(f.lastSeq, u)
		case ks == string(keyEpoch):
			f.epoch = max(f.epoch, u)
		case ks == string(keyDropped):
			f.dropped = max(f.dropped, u)
		case ks == string(keyCorrupt):
			f.corrupt = max(f.corrupt, u)
		case strings.HasPrefix(ks, dropPrefix) && len(ks) > len(dropPrefix):
			name := ks[len(dropPrefix):]
			f.drops[name] = max(f.drops[name], u)
		}
	})
	if f.lastSeq >= seqLimit {
		f.lastSeq = 0 // garbage that passed the checksum by chance is not a sequence
	}
	return f
}

// salvage rebuilds the damaged file at path (open and locked as f) into a
// fresh one: every intact record at or above the old low-water mark is
// copied with its sequence number, the counters are carried over, the new
// file starts a new sequence space above everything seen, and the damaged
// file is moved aside, never deleted. It returns the new database, open and
// locked at path.
func (q *Queue) salvage(f *os.File, reason error) (*bolt.DB, *SalvageReport, error) {
	path := q.path
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("buffer: salvage %s: %w", path, err)
	}
	size := info.Size()
	now := q.clock.Now().UTC()

	facts := findLayout(f, size)
	tmp := path + salvageSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("buffer: salvage %s: remove stale %s: %w", path, tmp, err)
	}
	opts := q.boltOptions(q.opts.LockTimeout)
	opts.MaxSize = 0 // what was in the old file fits; Open trims it to the bound
	dst, err := bolt.Open(tmp, 0o600, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("buffer: salvage %s: create %s: %w", path, tmp, err)
	}
	fail := func(err error) (*bolt.DB, *SalvageReport, error) {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("buffer: salvage %s: %w", path, err)
	}

	copied, live, maxSeq, err := copyRecords(f, size, facts, dst)
	if err != nil {
		return fail(err)
	}
	base := max(facts.lastSeq, maxSeq, clockSeqBase(now))
	if base >= seqLimit {
		return fail(fmt.Errorf("sequence space exhausted (%d)", base))
	}
	report := &SalvageReport{
		Time:      now,
		Reason:    reason.Error(),
		MovedTo:   corruptName(path, now),
		Recovered: copied,
		OldEpoch:  facts.epoch,
	}
	err = dst.Update(func(tx *bolt.Tx) error { return salvagedMeta(tx, base, now, copied, live, facts, report) })
	if err != nil {
		return fail(err)
	}

	// Mark the copy complete, keep the evidence under its new name, then let
	// the copy take the old name. With a hard link there is no moment without
	// a file at path; without one, Open finishes the job from .salvaged.
	done := path + salvagedSuffix
	if err := os.Rename(tmp, done); err != nil {
		return fail(fmt.Errorf("mark salvaged copy complete: %w", err))
	}
	tmp = done
	if err := os.Link(path, report.MovedTo); err != nil {
		if err := os.Rename(path, report.MovedTo); err != nil {
			return fail(fmt.Errorf("move damaged file aside: %w", err))
		}
	}
	if err := os.Rename(done, path); err != nil {
		return fail(fmt.Errorf("put salvaged file in place: %w", err))
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		q.log.Warn("buffer: sync directory after salvage", "dir", filepath.Dir(path), "err", err)
	}
	_ = f.Close() // releases the lock on the damaged file only; dst holds the new one
	q.log.Error("buffer: damaged buffer file salvaged; the damaged file is kept for inspection",
		"file", path, "moved_to", report.MovedTo, "reason", report.Reason,
		"recovered", copied, "old_epoch", facts.epoch, "new_epoch", base, "low_water", facts.low)
	return dst, report, nil
}

// salvagedMeta writes the bookkeeping of a salvaged file: a new sequence
// space after base, the counts of what was copied, the counters carried
// over and the salvage report.
func salvagedMeta(tx *bolt.Tx, base uint64, now time.Time, copied uint64, live int64, facts scanFacts, report *SalvageReport) error {
	m, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if err := initMeta(m, base, now); err != nil {
		return err
	}
	if err := m.Put(keyLive, u64(uint64(live))); err != nil {
		return err
	}
	if err := m.Put(keyCount, u64(copied)); err != nil {
		return err
	}
	for name, n := range facts.drops {
		if err := m.Put([]byte(dropPrefix+name), u64(n)); err != nil {
			return err
		}
	}
	js, err := json.Marshal(report)
	if err != nil {
		return err
	}
	if err := m.Put(keySalvage, js); err != nil {
		return err
	}
	if err := m.Put(keyCorrupt, u64(facts.corrupt)); err != nil {
		return err
	}
	return m.Put(keyDropped, u64(facts.dropped))
}

// salvageRunning rebuilds the file while the queue is open, after bbolt
// panicked on it (damage checkFile could not see, or damage since Open).
// Only the committer calls it; sequence numbers are kept, so readers'
// cursors and pending acks stay valid.
func (q *Queue) salvageRunning(reason error) error {
	f, err := os.Open(q.path)
	if err != nil {
		return err
	}
	db, _, err := q.salvage(f, reason)
	if err != nil {
		f.Close()
		return err
	}
	db.AllocSize = q.allocStep
	db.MaxSize = max(q.hardMax, int(q.fileBytes())+q.allocStep+2*q.groupMax)
	st, classes, err := q.loadDB(db)
	if err != nil {
		_ = db.Close()
		return err
	}
	q.dbMu.Lock()
	old := q.db
	q.db = db
	q.dbMu.Unlock()
	func() {
		defer func() { _ = recover() }() // the old handle is on a damaged file
		_ = old.Close()
	}()
	q.mu.Lock()
	st.Commits = q.st.Commits
	q.st, q.classes = st, classes
	// Records waiting for their commit keep their numbers: the new space
	// starts above them.
	q.nextSeq = max(q.nextSeq, st.NextSeq)
	q.reserved = st.reserved
	q.mu.Unlock()
	return nil
}

// findLayout picks the page size (from a valid meta page, else by trying
// the usual sizes) and gathers the bookkeeping facts.
func findLayout(r io.ReaderAt, size int64) scanFacts {
	metas, errs := readMetas(r, size)
	var sizes []int
	for i := range metas {
		if errs[i] == nil && validPageSize(metas[i].pageSize) {
			sizes = append(sizes, int(metas[i].pageSize))
		}
	}
	if len(sizes) == 0 {
		sizes = []int{os.Getpagesize()}
		for ps := minPageSize; ps <= maxPageSize; ps <<= 1 {
			if ps != os.Getpagesize() {
				sizes = append(sizes, ps)
			}
		}
	}
	var best scanFacts
	for _, ps := range sizes {
		f := gatherFacts(r, size, ps)
		if f.records > 0 || best.pageSize == 0 {
			best = f
		}
		if f.records > 0 {
			break
		}
	}
	return best
}

// copyRecords writes every intact record at or above the low-water mark into
// dst, in transactions of about 1 MiB. Stale copies of the same record (old
// versions of rewritten pages) are written once.
func copyRecords(r io.ReaderAt, size int64, facts scanFacts, dst *bolt.DB) (copied uint64, live int64, maxSeq uint64, err error) {
	type kv struct {
		seq   uint64
		class Class
		val   []byte
	}
	var batch []kv
	var batchBytes int
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := dst.Update(func(tx *bolt.Tx) error {
			for _, e := range batch {
				b, err := tx.CreateBucketIfNotExists(dataName(e.class))
				if err != nil {
					return err
				}
				b.FillPercent = fillPercent
				k := seqKey(e.seq)
				if b.Get(k) != nil {
					continue
				}
				if err := b.Put(k, e.val); err != nil {
					return err
				}
				copied++
				live += int64(elemOverhead + len(e.val))
				maxSeq = max(maxSeq, e.seq)
			}
			return nil
		})
		batch, batchBytes = batch[:0], 0
		return err
	}
	scanPages(r, size, facts.pageSize, func(k, v []byte, bucket bool) {
		if err != nil || bucket || len(k) != 8 {
			return
		}
		seq := keySeq(k)
		if seq < facts.low || seq == 0 || seq >= seqLimit {
			return
		}
		rec, derr := decodeRecord(v)
		if derr != nil {
			return
		}
		batch = append(batch, kv{seq: seq, class: rec.class, val: bytes.Clone(v)})
		if batchBytes += len(v); batchBytes >= 1<<20 {
			err = flush()
		}
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("copy records: %w", err)
	}
	return copied, live, maxSeq, nil
}

// corruptName is where a damaged file is moved: <path>.corrupt-<UTC time>,
// with a counter if that name is taken.
func corruptName(path string, t time.Time) string {
	base := path + ".corrupt-" + t.UTC().Format("20060102T150405Z")
	name := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
