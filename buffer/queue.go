package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configure a Queue. The zero value is usable.
type Options struct {
	// MaxBytes bounds the queued data (0 → 256 MiB). Records are counted with
	// what bbolt spends on them (value, key, element header), and the queue
	// drops the oldest records once they would need more than MaxBytes of
	// file; the file itself stays within MaxBytes plus one page.
	MaxBytes int64
	// CommitInterval is the group-commit window: Append waits at most this
	// long for other appends to share its transaction and fsync (0 → commit
	// at once; the agent uses 250ms). It is the loss window on power cut.
	CommitInterval time.Duration
	// LockTimeout bounds the wait for the file lock (0 → 2s); a second
	// process gets ErrLocked.
	LockTimeout time.Duration
	// Logger receives drops, salvage and disk errors (nil → slog.Default()).
	Logger *slog.Logger
	// MemoryBytes bounds the in-memory ring that holds records while the
	// disk refuses writes (0 → 1 MiB).
	MemoryBytes int64

	retryBase time.Duration // first retry after a disk error (0 → 1s); tests shorten it
}

const (
	defaultMaxBytes    = 256 << 20
	minMaxBytes        = 1 << 20
	defaultLockTimeout = 2 * time.Second
	defaultMemoryBytes = 1 << 20
	defaultRetryBase   = time.Second
	maxRetryDelay      = 30 * time.Second
	dropLogEvery       = 10 * time.Second

	// ackGroupMax bounds the deletes of one commit. A backlog drains at
	// hundreds of thousands of readings per second; waiting CommitInterval
	// gathered up to 150,000 acks, and the write transaction deleting them
	// holds every touched leaf as a decoded node (about 130 bytes per
	// delete) besides the pending set: the agent's live heap peaked at
	// 17-20 MB from that alone. A commit per ackGroupMax acks keeps it
	// near 1 MB. The price, only while a backlog drains that fast: more
	// commits (about 75 a second at 600,000 readings/s) and about 4.5 bytes
	// written per drained reading instead of 0.4. No guarantee changes: a
	// delete is still committed only after its ack, just sooner.
	ackGroupMax = 8192
	// drainQuiet is how long after the last full ack group a postponed
	// compaction waits (see commit).
	drainQuiet = time.Second

	// fillPercent suits append-only keys: full pages on the left of a split.
	fillPercent = 0.9

	// seqLimit keeps sequence numbers exact in JSON (float64) consumers.
	seqLimit = 1 << 53

	// seqFloor is 2025-01-01T00:00:00Z in Unix microseconds: the lowest start
	// of a new sequence space even when the clock has not been set yet.
	seqFloor uint64 = 1_735_689_600_000_000

	compactSuffix  = ".compact"
	salvageSuffix  = ".salvage"  // a salvage being written
	salvagedSuffix = ".salvaged" // a complete salvage about to take the file's place
	formatVersion  = 1
)

// maxMaxBytes caps MaxBytes: on 32-bit platforms the file is mapped into a
// 2 GiB address space, so keep the bound far below it.
var maxMaxBytes int64 = 1 << 40

func init() {
	if strconv.IntSize == 32 {
		maxMaxBytes = 1 << 30
	}
}

var (
	// ErrLocked means another process has the buffer file open.
	ErrLocked = errors.New("buffer: file is locked")
	// ErrClosed is returned by calls on a closed Queue.
	ErrClosed = errors.New("buffer: queue closed")
	// ErrNotDurable is wrapped by Append's error when the disk refused the
	// write and the records are held in the in-memory ring instead. They are
	// written when the disk accepts writes again, unless the ring overflows
	// first (such drops are counted like any other).
	ErrNotDurable = errors.New("buffer: records held in memory, not on disk")
)

var (
	bucketMeta  = []byte("m")
	keyFormat   = []byte("format")
	keyEpoch    = []byte("epoch")
	keyCreated  = []byte("created")
	keyLive     = []byte("live")
	keyCount    = []byte("count")
	keyLow      = []byte("low")
	keyDropped  = []byte("dropped")
	keySalvage  = []byte("salvage")
	dropPrefix  = "dropped/"
	dataPrefix  = byte('d')
	errNotQueue = errors.New("not a cityedge buffer file")
)

// Record is one item to append.
type Record struct {
	Key      string // producer (sensor name): drops are counted per key
	Priority uint8  // 0 environmental … higher is dropped later (occupancy = 1)
	Data     []byte
}

// Entry is a queued record as read back.
type Entry struct {
	Seq      uint64
	Time     time.Time // when it was appended (millisecond precision)
	Key      string
	Priority uint8
	Data     []byte // a copy, safe to keep
}

// Stats is a snapshot of the queue.
type Stats struct {
	Count        uint64    // records on disk
	Bytes        int64     // live bytes: the records as stored (value + key + element header)
	FileBytes    int64     // size of the file on disk
	OldestSeq    uint64    // 0 when empty
	OldestTime   time.Time // append time of the oldest record; zero when empty
	NextSeq      uint64    // sequence the next record written will get
	Epoch        uint64    // first value of this file's sequence space
	Dropped      map[string]uint64
	DroppedTotal uint64
	Memory       int    // records held in RAM because the disk refuses writes
	DiskError    string // the disk error while it lasts, "" when writes succeed
	Commits      uint64 // write transactions since Open
	Salvage      *SalvageReport
}

// Queue is a durable FIFO of records in a bbolt file. It is safe for
// concurrent use.
type Queue struct {
	path string
	opts Options
	log  *slog.Logger

	// Sizing derived from MaxBytes and the page size.
	limit     int64 // live-byte bound (committer only after Open)
	maxRecord int   // largest stored record accepted
	allocStep int
	groupMax  int
	hardMax   int

	dbMu sync.RWMutex // write-locked only to swap db after compaction
	db   *bolt.DB     // written by the committer only

	wake   chan struct{}
	notify chan struct{}
	done   chan struct{}

	mu          sync.Mutex
	closing     bool
	finalTried  bool
	reqs        []*request
	reqBytes    int
	reqAt       time.Time
	acks        map[uint64]struct{} // acked, not yet committed
	ackAt       time.Time
	ackFlight   map[uint64]struct{} // acks in the running commit (read-only then)
	ackSpare    map[uint64]struct{} // an empty set to reuse
	ring        []pending
	ringBytes   int64
	memDrops    map[string]uint64 // drops not yet persisted (ring overflow)
	diskErr     error
	retryAt     time.Time
	retryDelay  time.Duration
	prios       []uint8 // priorities that have a data bucket
	st          Stats   // persisted part, refreshed after each commit
	damaged     error   // a reader found the file damaged; the committer salvages it
	dropLog     map[string]uint64
	dropLogAt   time.Time
	badRecordAt time.Time

	// Committer only: the last commit of a full ack group, and a compaction
	// postponed until the drain it belongs to has been quiet for a while.
	fullAt    time.Time
	compactAt time.Time
}

type pending struct {
	prio uint8
	key  string
	val  []byte
}

type request struct {
	recs  []pending
	done  chan struct{}
	first uint64
	err   error
}

// Open opens or creates the queue file at path (its directory must exist).
// A file that cannot be trusted is salvaged: its intact records are copied
// into a fresh file, the damaged one is moved aside as
// <path>.corrupt-<UTC time>, and Stats().Salvage says so.
func Open(path string, opts Options) (*Queue, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.MaxBytes < minMaxBytes {
		return nil, fmt.Errorf("buffer: max bytes %d for %s is below the minimum %d", opts.MaxBytes, path, minMaxBytes)
	}
	if opts.MaxBytes > maxMaxBytes {
		// On 32-bit ARM the whole file is mapped into a 2 GiB address space.
		return nil, fmt.Errorf("buffer: max bytes %d for %s is above the maximum %d on this platform", opts.MaxBytes, path, maxMaxBytes)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = defaultMemoryBytes
	}
	if opts.retryBase <= 0 {
		opts.retryBase = defaultRetryBase
	}
	if opts.CommitInterval < 0 {
		opts.CommitInterval = 0
	}
	q := &Queue{
		path:       path,
		opts:       opts,
		log:        opts.Logger,
		wake:       make(chan struct{}, 1),
		notify:     make(chan struct{}, 1),
		done:       make(chan struct{}),
		memDrops:   map[string]uint64{},
		dropLog:    map[string]uint64{},
		retryDelay: opts.retryBase,
	}
	if q.log == nil {
		q.log = slog.Default()
	}
	q.size(os.Getpagesize())

	if err := q.openFile(); err != nil {
		return nil, err
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
		q.commit(&work{prios: q.prios})
	}
	if fb := q.fileBytes(); shouldCompact(fb, q.st.Bytes, 2) {
		q.compact("at open")
	}
	go q.run()
	return q, nil
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

func (q *Queue) boltOptions(timeout time.Duration) *bolt.Options {
	return &bolt.Options{
		Timeout:        timeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		MaxSize:        q.hardMax,
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
			if q.st, q.prios, err = q.loadDB(db); err == nil {
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
	if q.st, q.prios, err = q.loadDB(db); err != nil {
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

// loadDB initialises a new file or reads the bookkeeping of an existing
// one, returning the persisted part of Stats and the priorities present.
// Content that a buffer file cannot hold comes back as errDamaged.
func (q *Queue) loadDB(db *bolt.DB) (st Stats, prios []uint8, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading its bookkeeping panicked: %v", errDamaged, r)
		}
	}()
	now := time.Now().UTC()
	err = db.Update(func(tx *bolt.Tx) error {
		var other []byte
		hasMeta := false
		c := tx.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			switch isBucket := v == nil; {
			case isBucket && bytes.Equal(k, bucketMeta):
				hasMeta = true
			case isBucket && len(k) == 2 && k[0] == dataPrefix:
				prios = append(prios, k[1])
			default:
				other = bytes.Clone(k)
			}
		}
		if other != nil && !hasMeta {
			return fmt.Errorf("%w: it has key %q and no bucket %q", errNotQueue, other, bucketMeta)
		}
		if other != nil {
			return fmt.Errorf("%w: unexpected top-level key %q", errDamaged, other)
		}
		m := tx.Bucket(bucketMeta)
		if m == nil {
			var err error
			if m, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			base := clockSeqBase(now)
			q.log.Info("buffer: new buffer file", "file", q.path, "epoch", base)
			if err := initMeta(m, base, now); err != nil {
				return err
			}
		}
		if v := getU64(m, keyFormat); v != formatVersion {
			return fmt.Errorf("%w: format %d, this build reads %d", errDamaged, v, formatVersion)
		}
		if m.Sequence() >= seqLimit {
			return fmt.Errorf("%w: sequence %d is beyond 2^53", errDamaged, m.Sequence())
		}
		if js := m.Get(keySalvage); js != nil {
			var r SalvageReport
			if json.Unmarshal(js, &r) == nil {
				st.Salvage = &r
			}
		}
		st.Epoch = getU64(m, keyEpoch)
		st.DroppedTotal = getU64(m, keyDropped)
		st.Dropped = map[string]uint64{}
		mc := m.Cursor()
		for k, v := mc.Seek([]byte(dropPrefix)); k != nil && bytes.HasPrefix(k, []byte(dropPrefix)); k, v = mc.Next() {
			if len(v) == 8 {
				st.Dropped[string(k[len(dropPrefix):])] = binary.BigEndian.Uint64(v)
			}
		}
		var r commitResult
		q.snapshot(tx, m, &r)
		st.Count, st.Bytes, st.NextSeq, st.OldestSeq, st.OldestTime = r.count, r.live, r.nextSeq, r.oldestSeq, r.oldestTime
		return nil
	})
	if err != nil {
		return Stats{}, nil, fmt.Errorf("buffer: %s: %w", q.path, err)
	}
	return st, prios, nil
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
	st, prios, err := q.loadDB(db)
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
	q.st, q.prios = st, prios
	q.mu.Unlock()
	return nil
}

// initMeta writes the bookkeeping of a new sequence space starting after base.
func initMeta(m *bolt.Bucket, base uint64, now time.Time) error {
	if err := m.SetSequence(base); err != nil {
		return err
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyFormat, formatVersion},
		{keyEpoch, base},
		{keyCreated, uint64(now.Unix())},
		{keyLive, 0},
		{keyCount, 0},
		{keyLow, base + 1},
	} {
		if err := m.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// clockSeqBase is where a new sequence space starts: the current time in
// Unix microseconds, so it lies above any earlier space that handed out
// fewer than a million numbers per second, and never below seqFloor.
func clockSeqBase(now time.Time) uint64 {
	return max(uint64(max(now.UnixMicro(), 0)), seqFloor)
}

func dataName(prio uint8) []byte { return []byte{dataPrefix, prio} }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Append stores records durably: when it returns nil they are committed and
// fsynced, and first is the sequence number of recs[0], the others following
// in order. Appends arriving within CommitInterval share one transaction.
//
// If ctx ends while waiting, Append returns ctx.Err() and the records are
// still committed with their group. If the disk refuses the write, the
// error wraps ErrNotDurable and the records wait in memory (see Options).
func (q *Queue) Append(ctx context.Context, recs []Record) (first uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return 0, nil
	}
	now := time.Now()
	req := &request{recs: make([]pending, len(recs)), done: make(chan struct{})}
	size := 0
	for i, r := range recs {
		if len(r.Key) > maxKeyLen {
			return 0, fmt.Errorf("buffer: append: key %.40q… is %d bytes, longer than %d", r.Key, len(r.Key), maxKeyLen)
		}
		n := encodedLen(r.Key, r.Data, now)
		if n+elemOverhead > q.maxRecord {
			return 0, fmt.Errorf("buffer: append: record for key %q is %d bytes, more than a quarter of the buffer bound", r.Key, n)
		}
		req.recs[i] = pending{prio: r.Priority, key: r.Key, val: encodeRecord(make([]byte, 0, n), r.Priority, now, r.Key, r.Data)}
		size += n
	}

	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return 0, ErrClosed
	}
	if q.diskErr != nil {
		// Do not hammer a failing disk: the committer retries on its schedule.
		q.toRingLocked(req.recs)
		err := fmt.Errorf("%w: %v", ErrNotDurable, q.diskErr)
		q.mu.Unlock()
		return 0, err
	}
	if len(q.reqs) == 0 {
		q.reqAt = now
	}
	q.reqs = append(q.reqs, req)
	q.reqBytes += size
	q.mu.Unlock()
	q.kick()

	select {
	case <-req.done:
		return req.first, req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Ack deletes acknowledged records. It does not wait for the disk: the
// deletes are committed with the next group (within CommitInterval), and
// ReadAfter no longer returns them meanwhile. After a crash, acks from that
// last window reappear and are sent again (at-least-once). Unknown sequence
// numbers are ignored.
func (q *Queue) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	first := len(q.acks) == 0
	if first {
		q.ackAt = time.Now()
	}
	if q.acks == nil {
		q.acks = make(map[uint64]struct{}, len(seqs))
	}
	for _, s := range seqs {
		q.acks[s] = struct{}{}
	}
	full := len(q.acks) >= ackGroupMax
	q.mu.Unlock()
	// Only the first ack of a group (a new deadline) or a full group
	// changes what the committer waits for; waking it on every batch would
	// cost a context switch per message while a backlog drains.
	if first || full {
		q.kick()
	}
	return nil
}

// Notify returns a channel that receives (coalesced) after each commit that
// added records.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

// ReadAfter returns up to max records with sequence numbers above after, in
// ascending order, stopping before the payloads exceed maxBytes (0: no byte
// limit; at least one record is returned). Acked records are skipped.
func (q *Queue) ReadAfter(after uint64, max int, maxBytes int) (out []Entry, err error) {
	if max <= 0 || after >= seqLimit {
		return nil, nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("buffer: read %s: file damaged, salvaging it: %v", q.path, r)
			q.mu.Lock()
			q.damaged = fmt.Errorf("%w: bbolt panicked while reading: %v", errDamaged, r)
			q.mu.Unlock()
			q.kick()
		}
	}()
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	if q.db == nil {
		return nil, ErrClosed
	}
	q.mu.Lock()
	prios := slices.Clone(q.prios)
	q.mu.Unlock()

	err = q.db.View(func(tx *bolt.Tx) error {
		type head struct {
			c    *bolt.Cursor
			k, v []byte
		}
		heads := make([]head, 0, len(prios))
		start := seqKey(after + 1)
		for _, p := range prios {
			if b := tx.Bucket(dataName(p)); b != nil {
				c := b.Cursor()
				if k, v := c.Seek(start); k != nil {
					heads = append(heads, head{c, k, v})
				}
			}
		}
		// Holding mu here is safe: no holder of mu ever waits for bbolt.
		q.mu.Lock()
		defer q.mu.Unlock()
		total := 0
		// The copies share one buffer (arena), sized from the first record,
		// and a run of records of the same producer shares one Key string:
		// a drain reads a hundred records per batch, thousands of batches
		// a second, and one allocation per record was most of its garbage.
		var arena []byte
		var key string
		for len(out) < max {
			i := -1
			for j := range heads {
				if heads[j].k != nil && (i < 0 || bytes.Compare(heads[j].k, heads[i].k) < 0) {
					i = j
				}
			}
			if i < 0 {
				break
			}
			k, v := heads[i].k, heads[i].v
			heads[i].k, heads[i].v = heads[i].c.Next()
			seq := keySeq(k)
			if seq == 0 {
				q.badRecordLocked(seq, fmt.Errorf("%w: key of %d bytes", errBadRecord, len(k)))
				continue
			}
			if q.ackedLocked(seq) {
				continue
			}
			rec, derr := decodeRecord(v)
			if derr != nil {
				q.badRecordLocked(seq, derr)
				continue
			}
			if maxBytes > 0 && len(out) > 0 && total+len(rec.data) > maxBytes {
				break
			}
			total += len(rec.data)
			if out == nil {
				out = make([]Entry, 0, min(max, 256))
			}
			if cap(arena)-len(arena) < len(rec.data) {
				// Room for the rest of the batch if it is like this record.
				want := min(len(rec.data)*min(max-len(out), 1024), 64<<10)
				if maxBytes > 0 {
					want = min(want, maxBytes-total+len(rec.data))
				}
				if want < len(rec.data) {
					want = len(rec.data)
				}
				arena = make([]byte, 0, want)
			}
			at := len(arena)
			arena = append(arena, rec.data...)
			if string(rec.key) != key {
				key = string(rec.key)
			}
			out = append(out, Entry{
				Seq:      seq,
				Time:     rec.time,
				Key:      key,
				Priority: rec.priority,
				// Capacity cut to length: appending to one Data never
				// writes into the next.
				Data: arena[at:len(arena):len(arena)],
			})
		}
		return nil
	})
	return out, err
}

func (q *Queue) ackedLocked(seq uint64) bool {
	if _, ok := q.ackFlight[seq]; ok {
		return true
	}
	_, ok := q.acks[seq]
	return ok
}

// badRecordLocked handles a record whose checksum fails inside a sound
// tree (bit rot): it is logged and deleted like an acked one, since no
// receiver could use it.
func (q *Queue) badRecordLocked(seq uint64, err error) {
	if time.Since(q.badRecordAt) > dropLogEvery {
		q.badRecordAt = time.Now()
		q.log.Error("buffer: damaged record skipped and removed", "file", q.path, "seq", seq, "err", err)
	}
	if seq == 0 {
		return // not addressable by sequence; the bound removes it when it is the oldest
	}
	if len(q.acks) == 0 {
		q.ackAt = time.Now()
	}
	if q.acks == nil {
		q.acks = map[uint64]struct{}{}
	}
	q.acks[seq] = struct{}{}
	q.kick() // a non-blocking send: fine under mu
}

// Stats returns a snapshot.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	s := q.st
	s.Dropped = maps.Clone(q.st.Dropped)
	if s.Dropped == nil {
		s.Dropped = map[string]uint64{}
	}
	for k, n := range q.memDrops {
		s.Dropped[k] += n
		s.DroppedTotal += n
	}
	s.Memory = len(q.ring)
	if q.diskErr != nil {
		s.DiskError = q.diskErr.Error()
	}
	if q.st.Salvage != nil {
		r := *q.st.Salvage
		s.Salvage = &r
	}
	q.mu.Unlock()
	s.FileBytes = q.fileBytes()
	return s
}

func (q *Queue) fileBytes() int64 {
	if fi, err := os.Stat(q.path); err == nil {
		return fi.Size()
	}
	return 0
}

// Close commits what is pending and closes the file. Records still in the
// memory ring because the disk refuses writes are lost, and logged.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		<-q.done
		return nil
	}
	q.closing = true
	q.mu.Unlock()
	q.kick()
	<-q.done

	q.mu.Lock()
	q.maybeLogDropsLocked(true)
	if n := len(q.ring); n > 0 {
		q.log.Error("buffer: closing with records only in memory; they are lost", "file", q.path, "records", n, "err", q.diskErr)
	}
	q.mu.Unlock()
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	err := q.db.Close()
	q.db = nil
	if err != nil {
		return fmt.Errorf("buffer: close %s: %w", q.path, err)
	}
	return nil
}

func (q *Queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// toRingLocked keeps records in memory, dropping the oldest beyond
// MemoryBytes (counted per key, persisted with the next commit).
func (q *Queue) toRingLocked(recs []pending) {
	for _, r := range recs {
		q.ring = append(q.ring, r)
		q.ringBytes += int64(len(r.val))
	}
	for q.ringBytes > q.opts.MemoryBytes && len(q.ring) > 0 {
		r := q.ring[0]
		q.ring = q.ring[1:]
		q.ringBytes -= int64(len(r.val))
		q.memDrops[r.key]++
		q.dropLog[r.key]++
	}
	q.maybeLogDropsLocked(false)
}

func (q *Queue) maybeLogDropsLocked(force bool) {
	if len(q.dropLog) == 0 || (!force && time.Since(q.dropLogAt) < dropLogEvery) {
		return
	}
	var total uint64
	for _, n := range q.dropLog {
		total += n
	}
	q.log.Warn("buffer: full, dropped oldest records", "file", q.path, "dropped", total,
		"per_key", q.dropLog, "max_bytes", q.opts.MaxBytes, "memory", q.diskErr != nil)
	q.dropLog = map[string]uint64{}
	q.dropLogAt = time.Now()
}

// work is what one commit writes.
type work struct {
	reqs     []*request
	acks     []uint64 // sorted
	prios    []uint8  // priorities with a data bucket when the work was taken
	ring     []pending
	memDrops map[string]uint64
	ackFull  bool                // committed early because a full ack group was pending
	ackSet   map[uint64]struct{} // the acks as taken; commit sorts them into acks
}

// run is the committer: the only goroutine that writes to the database.
func (q *Queue) run() {
	defer close(q.done)
	// Turn a fault on the memory map (file damaged under us) into a panic
	// that commit recovers, instead of a crash.
	debug.SetPanicOnFault(true)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		q.mu.Lock()
		damaged := q.damaged
		q.damaged = nil
		q.mu.Unlock()
		if damaged != nil {
			q.log.Error("buffer: file damaged while running; salvaging it now", "file", q.path, "err", damaged)
			if err := q.salvageRunning(damaged); err != nil {
				q.log.Error("buffer: salvage failed", "file", q.path, "err", err)
			}
		}
		q.mu.Lock()
		w, wait, exit := q.takeLocked(time.Now())
		q.mu.Unlock()
		if exit {
			return
		}
		if w == nil {
			if !q.compactAt.IsZero() {
				// A compaction postponed by a fast drain (see commit) is
				// due once the drain has been quiet for drainQuiet.
				if d := time.Until(q.compactAt); d > 0 {
					if wait == 0 || d < wait { // 0: nothing else to wait for
						wait = d
					}
				} else {
					q.compactAt = time.Time{}
					q.mu.Lock()
					live := q.st.Bytes
					q.mu.Unlock()
					if shouldCompact(q.fileBytes(), live, 16) {
						q.compact("drained")
					}
					continue
				}
			}
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-q.wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		q.commit(w)
	}
}

// takeLocked decides whether to commit now; if not, how long to wait
// (0: until woken).
func (q *Queue) takeLocked(now time.Time) (w *work, wait time.Duration, exit bool) {
	hasWork := len(q.reqs) > 0 || len(q.acks) > 0 || len(q.ring) > 0 || len(q.memDrops) > 0
	if !hasWork {
		return nil, 0, q.closing
	}
	if q.closing && q.finalTried {
		return nil, 0, true
	}
	due := q.closing
	var next time.Time
	switch {
	case due:
	case q.diskErr != nil:
		due = !now.Before(q.retryAt)
		next = q.retryAt
	default:
		if len(q.reqs) > 0 {
			at := q.reqAt.Add(q.opts.CommitInterval)
			due = due || !now.Before(at) || q.reqBytes >= q.groupMax
			next = at
		}
		if len(q.acks) > 0 {
			at := q.ackAt.Add(q.opts.CommitInterval)
			due = due || !now.Before(at) || len(q.acks) >= ackGroupMax
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
		if len(q.reqs) == 0 && len(q.acks) == 0 {
			due = true // drop counts of a ring that was flushed but not persisted
		}
	}
	if !due {
		return nil, max(next.Sub(now), time.Millisecond), false
	}
	if q.closing {
		q.finalTried = true
	}
	w = &work{reqs: q.reqs, ring: q.ring, memDrops: maps.Clone(q.memDrops), prios: slices.Clone(q.prios),
		ackFull: len(q.acks) >= ackGroupMax}
	// The set itself goes to the commit: nobody writes to it any more, so
	// commit sorts it outside mu, which Ack and ReadAfter wait for.
	w.ackSet, q.ackFlight = q.acks, q.acks
	q.acks, q.ackSpare = q.ackSpare, nil
	q.reqs, q.reqBytes = nil, 0
	q.ring, q.ringBytes = nil, 0
	return w, 0, false
}

// commitResult carries what a commit learned back to the Queue.
type commitResult struct {
	firsts   []uint64
	added    int
	removed  int
	drops    map[string]uint64
	newPrios []uint8

	count, nextSeq, oldestSeq uint64
	live                      int64
	oldestTime                time.Time
}

// commit writes w in one transaction and settles the waiting appends.
func (q *Queue) commit(w *work) {
	if len(w.ackSet) > 0 {
		w.acks = make([]uint64, 0, len(w.ackSet))
		for s := range w.ackSet {
			w.acks = append(w.acks, s)
		}
		slices.Sort(w.acks)
	}
	var res commitResult
	err := q.update(w, &res)
	if errors.Is(err, errDamaged) {
		q.log.Error("buffer: file damaged while running; salvaging it now", "file", q.path, "err", err)
		if serr := q.salvageRunning(err); serr != nil {
			err = fmt.Errorf("%w (salvage failed: %v)", err, serr)
		} else {
			w.prios = slices.Clone(q.prios)
			err = q.update(w, &res)
		}
	}

	q.mu.Lock()
	q.ackFlight = nil
	if w.ackSet != nil && len(w.ackSet) <= 2*ackGroupMax {
		// Its storage serves a later group, unless a stall made it big.
		clear(w.ackSet)
		q.ackSpare = w.ackSet
	}
	if err != nil {
		if len(w.acks) > 0 && q.acks == nil {
			q.acks = make(map[uint64]struct{}, len(w.acks))
		}
		for _, s := range w.acks {
			q.acks[s] = struct{}{}
		}
		if len(q.acks) > 0 && q.ackAt.IsZero() {
			q.ackAt = time.Now()
		}
		// Keep the records in memory, in order: older ring first, then the
		// group, then whatever arrived during the commit.
		later := q.ring
		q.ring, q.ringBytes = nil, 0
		q.toRingLocked(w.ring)
		for _, r := range w.reqs {
			q.toRingLocked(r.recs)
		}
		q.toRingLocked(later)
		// Appends that queued up during this commit would otherwise wait
		// for the retry; they join the ring and return now.
		waiting := q.reqs
		q.reqs, q.reqBytes = nil, 0
		for _, r := range waiting {
			q.toRingLocked(r.recs)
		}
		if q.diskErr == nil {
			q.log.Error("buffer: cannot write to disk; holding records in memory", "file", q.path, "err", err)
		} else {
			q.log.Warn("buffer: disk still refuses writes", "file", q.path, "err", err, "memory", len(q.ring))
		}
		q.diskErr = err
		q.retryAt = time.Now().Add(q.retryDelay)
		q.retryDelay = min(2*q.retryDelay, maxRetryDelay)
		q.mu.Unlock()
		nd := fmt.Errorf("%w: %v", ErrNotDurable, err)
		for _, r := range append(w.reqs, waiting...) {
			r.err = nd
			close(r.done)
		}
		return
	}
	if q.diskErr != nil {
		q.log.Info("buffer: disk accepts writes again", "file", q.path, "written_from_memory", len(w.ring))
	}
	q.diskErr = nil
	q.retryDelay = q.opts.retryBase
	for k, n := range w.memDrops {
		if q.memDrops[k] -= n; q.memDrops[k] == 0 {
			delete(q.memDrops, k)
		}
	}
	if q.st.Dropped == nil {
		q.st.Dropped = map[string]uint64{}
	}
	for k, n := range w.memDrops {
		q.st.Dropped[k] += n
		q.st.DroppedTotal += n
	}
	for k, n := range res.drops {
		q.st.Dropped[k] += n
		q.st.DroppedTotal += n
		q.dropLog[k] += n
	}
	q.maybeLogDropsLocked(false)
	for _, p := range res.newPrios {
		if !slices.Contains(q.prios, p) {
			q.prios = append(q.prios, p)
		}
	}
	slices.Sort(q.prios)
	q.applySnapshot(&res)
	q.st.Commits++
	if len(q.ring) > 0 || len(q.memDrops) > 0 {
		defer q.kick() // records that reached the ring during this commit
	}
	q.mu.Unlock()

	for i, r := range w.reqs {
		r.first = res.firsts[i]
		close(r.done)
	}
	if res.added > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	if w.ackFull {
		q.fullAt = time.Now()
	}
	if res.removed > 0 && shouldCompact(q.fileBytes(), res.live, 16) {
		if quietAt := q.fullAt.Add(drainQuiet); time.Now().Before(quietAt) {
			// Full ack groups: a backlog is draining fast and the live part
			// shrinks by the millisecond. A copy now would move megabytes
			// that are about to be deleted, while acks pile up in memory
			// behind it; compact once the drain has been quiet a while.
			q.compactAt = quietAt
		} else {
			q.compactAt = time.Time{}
			q.compact("drained")
		}
	}
}

func (q *Queue) applySnapshot(r *commitResult) {
	q.st.Count = r.count
	q.st.Bytes = r.live
	q.st.NextSeq = r.nextSeq
	q.st.OldestSeq = r.oldestSeq
	q.st.OldestTime = r.oldestTime
}

// update runs the transaction; a panic inside bbolt (a file damaged while
// we run) becomes an error.
func (q *Queue) update(w *work, res *commitResult) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked while writing: %v", errDamaged, r)
		}
	}()
	for attempt := 0; ; attempt++ {
		*res = commitResult{}
		err = q.db.Update(func(tx *bolt.Tx) error { return q.apply(tx, w, res) })
		if !errors.Is(err, berrors.ErrMaxSizeReached) || attempt > 0 {
			return err
		}
		// The soft bound should keep the file below the hard cap; if it did
		// not, free pages in a commit of their own and try once more.
		q.log.Error("buffer: file reached its hard size cap; dropping more", "file", q.path, "cap", q.hardMax)
		q.limit = q.limit * 7 / 8
		var trim commitResult
		if err := q.db.Update(func(tx *bolt.Tx) error { return q.apply(tx, &work{prios: w.prios}, &trim) }); err != nil {
			return err
		}
		q.mu.Lock()
		for k, n := range trim.drops {
			q.st.Dropped[k] += n
			q.st.DroppedTotal += n
			q.dropLog[k] += n
		}
		q.mu.Unlock()
	}
}

// apply is the body of a commit: acks, then appends (the ring first, it is
// older), then the bound, then the bookkeeping.
func (q *Queue) apply(tx *bolt.Tx, w *work, res *commitResult) error {
	m := tx.Bucket(bucketMeta)
	live := int64(getU64(m, keyLive))
	count := getU64(m, keyCount)
	buckets := map[uint8]*bolt.Bucket{}
	prios := slices.Clone(w.prios)
	bucket := func(p uint8, create bool) (*bolt.Bucket, error) {
		if b, ok := buckets[p]; ok {
			return b, nil
		}
		b := tx.Bucket(dataName(p))
		if b == nil {
			if !create {
				return nil, nil
			}
			var err error
			if b, err = tx.CreateBucket(dataName(p)); err != nil {
				return nil, err
			}
			res.newPrios = append(res.newPrios, p)
			prios = append(prios, p)
			slices.Sort(prios)
		}
		b.FillPercent = fillPercent
		buckets[p] = b
		return b, nil
	}

	// The deletes walk each bucket with one cursor, from the highest ack
	// down: Bucket.Get and Bucket.Delete would each build a cursor with a
	// fresh search stack (about 300 bytes of garbage per ack) and search
	// from the root, and deleting the last element of a node moves no
	// others, while deleting the first moves all of them. After a delete
	// the cursor's Prev is the next candidate (acks come in runs); a key
	// is deleted only after it compared equal to an ack.
	if len(w.acks) > 0 {
		type cur struct {
			c    *bolt.Cursor
			k, v []byte
		}
		var curs []cur
		for _, p := range prios {
			if b, err := bucket(p, false); err == nil && b != nil {
				curs = append(curs, cur{c: b.Cursor()})
			}
		}
		var k [8]byte
		for i := len(w.acks) - 1; i >= 0; i-- {
			binary.BigEndian.PutUint64(k[:], w.acks[i])
			found := -1
			for j := range curs {
				if bytes.Equal(curs[j].k, k[:]) {
					found = j
					break
				}
			}
			for j := 0; found < 0 && j < len(curs); j++ {
				if curs[j].k, curs[j].v = curs[j].c.Seek(k[:]); bytes.Equal(curs[j].k, k[:]) {
					found = j
				}
			}
			if found < 0 || curs[found].v == nil {
				continue // not stored (or a nested bucket, which Get also skipped)
			}
			cu := &curs[found]
			live -= int64(elemOverhead + len(cu.v))
			count--
			if err := cu.c.Delete(); err != nil {
				return err
			}
			res.removed++
			cu.k, cu.v = cu.c.Prev()
		}
	}

	put := func(r pending) (uint64, error) {
		b, err := bucket(r.prio, true)
		if err != nil {
			return 0, err
		}
		seq, err := m.NextSequence()
		if err != nil {
			return 0, err
		}
		if seq >= seqLimit {
			return 0, fmt.Errorf("sequence %d is beyond 2^53", seq)
		}
		if err := b.Put(seqKey(seq), r.val); err != nil {
			return 0, err
		}
		live += int64(elemOverhead + len(r.val))
		count++
		res.added++
		return seq, nil
	}
	for _, r := range w.ring {
		if _, err := put(r); err != nil {
			return err
		}
	}
	res.firsts = make([]uint64, len(w.reqs))
	for i, req := range w.reqs {
		for j, r := range req.recs {
			seq, err := put(r)
			if err != nil {
				return err
			}
			if j == 0 {
				res.firsts[i] = seq
			}
		}
	}

	// The bound: oldest first within the lowest priority, then the next.
	for _, p := range prios {
		if live <= q.limit {
			break
		}
		b, err := bucket(p, false)
		if err != nil || b == nil {
			continue
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && live > q.limit; k, v = c.First() {
			var err error
			key := "?"
			if rec, err := decodeRecord(v); err == nil {
				key = string(rec.key)
			}
			if res.drops == nil {
				res.drops = map[string]uint64{}
			}
			res.drops[key]++
			live -= int64(elemOverhead + len(v))
			count--
			res.removed++
			if v == nil { // a nested bucket cannot be in a data bucket; remove it all the same
				err = b.DeleteBucket(k)
			} else {
				err = c.Delete()
			}
			if err != nil {
				return err
			}
		}
	}
	if count == 0 {
		live = 0 // nothing left to count; clears any drift
	}

	dropped := getU64(m, keyDropped)
	for _, d := range []map[string]uint64{res.drops, w.memDrops} {
		for k, n := range d {
			name := []byte(dropPrefix + k)
			if err := m.Put(name, u64(getU64(m, name)+n)); err != nil {
				return err
			}
			dropped += n
		}
	}
	if err := m.Put(keyDropped, u64(dropped)); err != nil {
		return err
	}
	if err := m.Put(keyLive, u64(uint64(max(live, 0)))); err != nil {
		return err
	}
	if err := m.Put(keyCount, u64(count)); err != nil {
		return err
	}
	q.snapshot(tx, m, res)
	res.live, res.count = max(live, 0), count
	low := res.oldestSeq
	if low == 0 {
		low = res.nextSeq
	}
	return m.Put(keyLow, u64(low))
}

// snapshot fills the stats a commit or open leaves behind.
func (q *Queue) snapshot(tx *bolt.Tx, m *bolt.Bucket, res *commitResult) {
	res.live = int64(getU64(m, keyLive))
	res.count = getU64(m, keyCount)
	res.nextSeq = m.Sequence() + 1
	res.oldestSeq, res.oldestTime = 0, time.Time{}
	var oldest []byte
	var oldestVal []byte
	_ = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if len(name) != 2 || name[0] != dataPrefix {
			return nil
		}
		if k, v := b.Cursor().First(); k != nil && (oldest == nil || bytes.Compare(k, oldest) < 0) {
			oldest, oldestVal = k, v
		}
		return nil
	})
	if oldest != nil {
		res.oldestSeq = keySeq(oldest)
		if rec, err := decodeRecord(oldestVal); err == nil {
			res.oldestTime = rec.time
		}
	}
}

// shouldCompact: compact when the file is big and mostly free. The copy
// costs what is live, so the ratio is strict while running and looser at
// Open, where nothing waits.
func shouldCompact(fileBytes, live int64, ratio int64) bool {
	const minFile = 4 << 20
	used := int64(float64(live)/fillPercent) + 64<<10
	return fileBytes >= minFile && used*ratio <= fileBytes
}

// compact copies the live data into a new file and swaps it in (bbolt
// never shrinks a file). Only the committer calls it.
func (q *Queue) compact(why string) {
	before := q.fileBytes()
	tmp := q.path + compactSuffix
	_ = os.Remove(tmp)
	fail := func(step string, err error) {
		q.log.Warn("buffer: compaction failed; keeping the current file", "file", q.path, "step", step, "err", err)
		_ = os.Remove(tmp)
	}
	opts := q.boltOptions(q.opts.LockTimeout)
	opts.MaxSize = 0 // the copy is never larger than the source
	dst, err := bolt.Open(tmp, 0o600, opts)
	if err != nil {
		fail("create", err)
		return
	}
	dst.AllocSize = q.allocStep
	if err := bolt.Compact(dst, q.db, 1<<20); err != nil {
		_ = dst.Close()
		fail("copy", err)
		return
	}
	dst.MaxSize = q.hardMax
	// While the old file is still open and locked, the new one (locked by
	// dst) takes its name: no moment without a locked file at path.
	if err := os.Rename(tmp, q.path); err != nil {
		_ = dst.Close()
		fail("rename", err)
		return
	}
	if err := syncDir(filepath.Dir(q.path)); err != nil {
		q.log.Warn("buffer: sync directory after compaction", "file", q.path, "err", err)
	}
	q.dbMu.Lock()
	old := q.db
	q.db = dst
	q.dbMu.Unlock()
	_ = old.Close()
	q.log.Info("buffer: compacted", "file", q.path, "why", why, "before_bytes", before, "after_bytes", q.fileBytes())
}
