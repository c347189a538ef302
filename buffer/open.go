package buffer

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
)

// Open opens or creates the queue file at path (its directory must exist).
// A file that cannot be trusted is salvaged: its intact records are copied
// into a fresh file, the damaged one is moved aside as
// <path>.corrupt-<UTC time>, and Stats().Salvage says so. A file of an
// earlier format is upgraded in place (see FormatVersion).
func Open(path string, opts Options) (*Queue, error) {
	opts, err := opts.withDefaults(path)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		path:       path,
		opts:       opts,
		log:        opts.Logger,
		clock:      opts.Clock,
		wake:       make(chan struct{}, 1),
		notify:     make(chan struct{}, 1),
		done:       make(chan struct{}),
		memDrops:   map[string]uint64{},
		dropLog:    map[string]uint64{},
		retryDelay: firstRetryDelay,
	}
	q.size(os.Getpagesize())

	if err := q.openFile(); err != nil {
		return nil, err
	}
	q.nextSeq, q.reserved = q.st.NextSeq, q.st.reserved
	if err := q.loadState(); err != nil {
		_ = q.db.Close()
		return nil, err
	}
	if err := q.openOutputs(); err != nil {
		_ = q.db.Close()
		return nil, fmt.Errorf("buffer: %s: outputs: %w", path, err)
	}
	db := q.db
	q.size(db.Info().PageSize)
	db.AllocSize = q.allocStep
	// A file from a run with a larger MaxBytes may exceed the hard cap until
	// it is trimmed and compacted below.
	db.MaxSize = max(q.hardMax, int(q.fileBytes())+q.allocStep+2*q.groupMax)
	if q.st.Bytes > q.limit {
		// MaxBytes was lowered since the last run: trim now, not on the
		// first append.
		q.commit(&work{classes: q.classes})
	}
	if fb := q.fileBytes(); shouldCompact(fb, q.st.Bytes, 2) {
		q.compact("at open")
	}
	go q.run()
	return q, nil
}

// withDefaults fills in the zero values and checks the bound.
func (o Options) withDefaults(path string) (Options, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = defaultMaxBytes
	}
	if o.MaxBytes < minMaxBytes {
		return o, fmt.Errorf("buffer: max bytes %d for %s is below the minimum %d", o.MaxBytes, path, minMaxBytes)
	}
	if o.MaxBytes > maxMaxBytes {
		// On 32-bit ARM the whole file is mapped into a 2 GiB address space.
		return o, fmt.Errorf("buffer: max bytes %d for %s is above the maximum %d on this platform", o.MaxBytes, path, maxMaxBytes)
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = defaultMemoryBytes
	}
	if o.CommitInterval < 0 {
		o.CommitInterval = 0
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	return o, nil
}

// size derives the internal bounds from MaxBytes for a page size. The file
// holds, besides the live records, the pages a commit frees (reusable only
// by the next commit), the growth step, and page overhead; the live-byte
// limit leaves room for all of it so the file stays within MaxBytes.
func (q *Queue) size(pageSize int) {
	mb := q.opts.MaxBytes
	ps := int64(pageSize)
	roundPages := func(n int64) int64 { return (n + ps - 1) / ps * ps }
	q.allocStep = int(roundPages(min(max(mb/256, 8*ps), 1<<20)))
	q.groupMax = int(min(max(mb/32, 8*ps), 4<<20))
	room := mb - int64(q.allocStep) - int64(float64(q.groupMax)/fillPercent) - 8*ps
	q.limit = int64(float64(room) * fillPercent * 0.97)
	q.maxRecord = int(q.limit / 4)
	q.hardMax = int(mb + mb/4 + 1<<20)
}

// boltOptions are the options of every read-write bbolt handle. Files
// bbolt creates (compaction, salvage) get the owner of their directory.
func (q *Queue) boltOptions(timeout time.Duration) *bolt.Options {
	return &bolt.Options{
		Timeout:        timeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		MaxSize:        q.hardMax,
		OpenFile:       openOwned,
	}
}

// openFile locks the file, checks it and opens it with bbolt (q.db), then
// loads the bookkeeping; a file that fails either step is salvaged.
func (q *Queue) openFile() error {
	if _, err := os.Stat(q.path); errors.Is(err, os.ErrNotExist) {
		// A salvage that moved the damaged file aside by rename (no hard
		// links) and was cut off before putting the complete new one in place.
		if err := os.Rename(q.path+salvagedSuffix, q.path); err == nil {
			q.log.Warn("buffer: finished an interrupted salvage", "file", q.path)
		}
	}
	f, err := lockFile(q.path, q.opts.LockTimeout)
	if err != nil {
		return err
	}
	// We hold the lock: temporary files left by a crash are ours to remove.
	for _, suffix := range []string{compactSuffix, salvageSuffix, salvagedSuffix} {
		if err := os.Remove(q.path + suffix); err == nil {
			q.log.Warn("buffer: removed temporary file left by an interrupted run", "file", q.path+suffix)
		}
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("buffer: stat %s: %w", q.path, err)
	}
	var reason error
	if info.Size() > 0 {
		reason = checkFile(f, info.Size())
	}
	if reason == nil {
		db, err := openLocked(q.path, f, q.boltOptions(q.opts.LockTimeout))
		if err == nil {
			if q.st, q.classes, err = q.loadDB(db); err == nil {
				q.db = db
				return nil
			}
			_ = db.Close() // also closes f
		}
		if !errors.Is(err, errDamaged) {
			return fmt.Errorf("buffer: open %s: %w", q.path, err)
		}
		// Sound structure, unusable content: salvage with a fresh lock.
		reason = err
		if f, err = lockFile(q.path, q.opts.LockTimeout); err != nil {
			return err
		}
	}
	db, _, err := q.salvage(f, reason)
	if err != nil {
		f.Close()
		return err
	}
	if q.st, q.classes, err = q.loadDB(db); err != nil {
		_ = db.Close()
		return fmt.Errorf("buffer: open salvaged %s: %w", q.path, err)
	}
	q.db = db
	return nil
}

// openLocked hands the already locked file to bbolt (bbolt's own flock on
// the same open file succeeds at once, so there is no unlocked moment).
func openLocked(path string, f *os.File, opts *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			_ = f.Close()
			db, err = nil, fmt.Errorf("%w: bbolt panicked opening it: %v", errDamaged, r)
		}
	}()
	o := *opts
	o.OpenFile = func(string, int, os.FileMode) (*os.File, error) { return f, nil }
	return bolt.Open(path, 0o600, &o)
}

// loadDB initialises a new file, or upgrades an older one, and returns the
// persisted part of Stats and the classes present. Content that a buffer
// file cannot hold comes back as errDamaged.
func (q *Queue) loadDB(db *bolt.DB) (st Stats, classes []Class, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading its bookkeeping panicked: %v", errDamaged, r)
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		if classes, err = topLevel(tx); err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		if m == nil {
			if m, err = q.newMeta(tx); err != nil {
				return err
			}
		}
		if st, err = q.loadMeta(tx, m); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return Stats{}, nil, fmt.Errorf("buffer: %s: %w", q.path, err)
	}
	return st, classes, nil
}

// topLevel lists the data buckets' classes, and refuses a file with
// anything a buffer file does not hold.
func topLevel(tx *bolt.Tx) (classes []Class, err error) {
	var other []byte
	hasMeta := false
	c := tx.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		class, data := isData(k)
		switch isBucket := v == nil; {
		case isBucket && bytes.Equal(k, bucketMeta):
			hasMeta = true
		case isBucket && data:
			classes = append(classes, class)
		case isBucket && isOutBucket(k): // an output's marks (format 4)
		default:
			other = bytes.Clone(k)
		}
	}
	if other != nil && !hasMeta {
		return nil, fmt.Errorf("%w: it has key %q and no bucket %q", errNotQueue, other, bucketMeta)
	}
	if other != nil {
		return nil, fmt.Errorf("%w: unexpected top-level key %q", errDamaged, other)
	}
	return classes, nil
}

// newMeta starts the bookkeeping of a new file.
func (q *Queue) newMeta(tx *bolt.Tx) (*bolt.Bucket, error) {
	m, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return nil, err
	}
	now := q.clock.Now().UTC()
	base := clockSeqBase(now)
	q.log.Info("buffer: new buffer file", "file", q.path, "epoch", base)
	return m, initMeta(m, base, now)
}

// loadMeta checks the format, upgrades an older file and reads the
// persisted part of Stats.
func (q *Queue) loadMeta(tx *bolt.Tx, m *bolt.Bucket) (Stats, error) {
	facts := readMeta(m)
	if err := checkFormat(facts.format); err != nil {
		return Stats{}, err
	}
	if m.Sequence() >= seqLimit {
		return Stats{}, fmt.Errorf("%w: sequence %d is beyond 2^53", errDamaged, m.Sequence())
	}
	if facts.format < FormatVersion {
		if err := upgrade(m, facts.format); err != nil {
			return Stats{}, err
		}
		q.log.Info("buffer: file upgraded to the current format", "file", q.path, "from", facts.format, "to", FormatVersion)
		facts.format = FormatVersion
	}
	var r commitResult
	snapshot(tx, m, &r)
	if res := getU64(m, keyReserved); res > r.nextSeq {
		// The last run ended without its final commit (a crash, a power
		// cut): the numbers it had reserved may have reached a receiver.
		q.log.Warn("buffer: the last run did not close the file; skipping the sequence numbers it had reserved",
			"file", q.path, "from", r.nextSeq, "to", res-1)
		r.nextSeq = res
	}
	// Reserve the first block of this run in the transaction Open runs
	// anyway.
	reserved := r.nextSeq + reserveBlock
	if err := m.Put(keyReserved, u64(reserved)); err != nil {
		return Stats{}, err
	}
	return Stats{reserved: reserved,
		Count: r.count, Bytes: r.live, NextSeq: r.nextSeq, OldestSeq: r.oldestSeq, OldestTime: r.oldestTime,
		Epoch: facts.epoch, Format: facts.format, Dropped: facts.dropped, DroppedTotal: facts.droppedTotal,
		Corrupt: facts.corrupt, Salvage: facts.salvage,
	}, nil
}
