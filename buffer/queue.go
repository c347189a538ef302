package buffer

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
)

// Options configure a Queue. The zero value is usable.
type Options struct {
	// MaxBytes bounds the queued data (0 → 256 MiB). Records are counted with
	// what bbolt spends on them (value, key, element header), and the queue
	// drops the oldest records once they would need more than MaxBytes of
	// file; the file itself stays within MaxBytes plus one page.
	MaxBytes int64
	// CommitInterval is the group-commit window (0 → commit at once; the
	// agent's default is buffer.commit_interval's). A record is written at
	// the latest this long after its Append, with every other record then
	// waiting, in one transaction and fsync; a record the reader has
	// acknowledged by then is never written at all. Occupancy changes wait
	// at most OccupancyWindow instead. It is the loss window on power cut:
	// what is lost is at most the records of the last CommitInterval that
	// nobody had acknowledged.
	CommitInterval time.Duration
	// LockTimeout bounds the wait for the file lock (0 → 2s); a second
	// process gets ErrLocked.
	LockTimeout time.Duration
	// Logger receives drops, salvage and disk errors (nil → slog.Default()).
	Logger *slog.Logger
	// MemoryBytes bounds the in-memory ring that holds records while the
	// disk refuses writes (0 → 1 MiB). While a retry is writing the ring,
	// the records arriving meanwhile wait in a second ring of the same
	// bound: dropping them to keep one bound would lose records the retry
	// may be about to make durable.
	MemoryBytes int64
	// Clock stamps records and times the group commit, retries and
	// compaction (nil → the real clock). Waiting for another process's file
	// lock (LockTimeout) always uses real time.
	Clock clockwork.Clock
	// Outputs names the outputs that each must acknowledge a record before
	// it leaves the queue (Output, progress.go). Fewer than two: Ack alone
	// deletes, and nothing per output is stored.
	Outputs []string
}

const (
	defaultMaxBytes    = 256 << 20
	minMaxBytes        = 1 << 20
	defaultLockTimeout = 2 * time.Second
	defaultMemoryBytes = 1 << 20
	firstRetryDelay    = time.Second // after a disk error; doubled up to maxRetryDelay
	maxRetryDelay      = 30 * time.Second
	dropLogEvery       = 10 * time.Second

	// OccupancyWindow is how long at most an occupancy change
	// (ClassOccupancy) waits for its commit: committed (fsynced) within this
	// much and the fsync's time, unless acknowledged before, so that it is
	// on disk or at the broker within 100 ms of being detected.
	OccupancyWindow = 50 * time.Millisecond

	// reserveBlock is how many sequence numbers a commit reserves beyond
	// those handed out: a record may be read (and sent) before it is
	// written only when its number is below the durable reservation, so a
	// number a receiver has seen is never handed out again after a crash.
	// A crash leaves the unused rest of the block as a gap.
	reserveBlock = 8192

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
	// compaction waits (see afterCommit).
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

// Stats is a snapshot of the queue.
type Stats struct {
	Count      uint64    // records queued: on disk, or appended and waiting for their commit
	Bytes      int64     // live bytes: the records as stored (value + key + element header)
	FileBytes  int64     // size of the file on disk
	OldestSeq  uint64    // 0 when empty
	OldestTime time.Time // append time of the oldest record; zero when empty
	NextSeq    uint64    // sequence the next record appended will get
	Epoch      uint64    // first value of this file's sequence space
	Format     uint64    // format version of the file (see FormatVersion)
	// The drop counters, persistent and only growing. Dropped counts the
	// records the bound or the memory ring dropped, per key; DroppedTotal is
	// their sum. Corrupt counts records that could not be decoded when read
	// (their key is unknown) and were removed. Together they explain every
	// gap in the sequence numbers, except the replaced unsent reports of
	// PutReport.
	Dropped      map[string]uint64
	DroppedTotal uint64
	Corrupt      uint64
	Memory       int    // records held in RAM because the disk refuses writes, those a retry is writing included
	DiskError    string // the disk error while it lasts, "" when writes succeed
	Commits      uint64 // write transactions since Open
	Salvage      *SalvageReport
	// Outputs is each output's progress when several are configured.
	Outputs map[string]OutputStats

	reserved uint64 // Open: numbers below this are durably reserved
}

// Queue is a durable FIFO of records in a bbolt file. It is safe for
// concurrent use.
type Queue struct {
	path  string
	opts  Options
	log   *slog.Logger
	clock clockwork.Clock

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

	mu           sync.Mutex
	closing      bool
	finalTried   bool
	reqs         []*request // appended, not yet taken by a commit (ascending seq)
	reqBytes     int
	flight       []*request          // taken by the running commit
	nextSeq      uint64              // the next sequence number to hand out
	reserved     uint64              // numbers below this are durably reserved: readable before their commit
	occPending   int                 // unacked occupancy records in reqs
	acks         map[uint64]struct{} // acked, not yet committed
	ackAt        time.Time
	ackMax       uint64              // no seq above this is in acks
	ackFlight    map[uint64]struct{} // acks in the running commit (read-only then)
	ackFlightMax uint64              // no seq above this is in ackFlight
	ackSpare     map[uint64]struct{} // an empty set to reuse
	corrupt      map[uint64]struct{} // undecodable records among acks, to count as corrupt
	ring         []pending
	ringBytes    int64
	ringFlight   int               // ring records the running commit is writing
	memDrops     map[string]uint64 // drops not yet persisted (ring overflow)
	diskErr      error
	retryAt      time.Time
	retryDelay   time.Duration
	classes      []Class // classes that have a data bucket, ascending
	st           Stats   // persisted part, refreshed after each commit
	damaged      error   // a reader found the file damaged; the committer salvages it
	dropLog      map[string]uint64
	dropLogAt    time.Time
	badRecordAt  time.Time
	state        map[string][]byte // SetState: kept state, as State returns it
	statePending map[string][]byte // SetState: not yet committed
	outs         []*outState       // Options.Outputs, sorted by name (progress.go)
	// gen counts finished commits. A reader opens its snapshot before it
	// takes mu; when a commit finished in between, the records and acks
	// that commit held in memory are gone from memory but not in the
	// snapshot, so the reader reads again (ReadAfter).
	gen uint64

	// Committer only: the last commit of a full ack group, and a compaction
	// postponed until the drain it belongs to has been quiet for a while.
	fullAt    time.Time
	compactAt time.Time
}

// pending is an encoded record waiting for its commit.
type pending struct {
	seq     uint64
	class   Class
	key     string
	val     []byte
	replace bool // a report (PutReport): replaces the unsent ones of its class
	acked   bool // acknowledged before its commit: never written
}

type request struct {
	recs  []pending
	at    time.Time // when Append took it
	done  chan struct{}
	first uint64
	left  int // records neither acknowledged nor committed; done closes at 0
	err   error
}

// settle closes done once (the caller holds mu, or owns the request).
func (r *request) settle(err error) {
	if r.left >= 0 {
		r.left = -1
		r.err = err
		close(r.done)
	}
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
	s.Memory = len(q.ring) + q.ringFlight
	s.NextSeq = q.nextSeq
	s.Outputs = q.outputStatsLocked()
	for _, reqs := range [][]*request{q.flight, q.reqs} {
		for _, r := range reqs {
			for _, p := range r.recs {
				if !p.acked {
					s.Count++
					if s.OldestSeq == 0 {
						s.OldestSeq = p.seq
					}
				}
			}
		}
	}
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

// Notify returns a channel that receives (coalesced) after each commit that
// added records.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

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
