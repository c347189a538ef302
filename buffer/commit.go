package buffer

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime/debug"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Ack deletes acknowledged records. It does not wait for the disk: the
// deletes are committed with the next group (within CommitInterval), and
// ReadAfter no longer returns them meanwhile. A record acknowledged before
// its own commit fell due is never written, and its Append returns. After
// a crash, acks from that last window reappear and are sent again
// (at-least-once). Unknown sequence numbers are ignored.
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
	full := false
	for _, s := range seqs {
		if q.ackPendingLocked(s) {
			continue
		}
		if len(q.acks) == 0 {
			q.ackAt = q.clock.Now()
		}
		if q.acks == nil {
			q.acks = make(map[uint64]struct{}, len(seqs))
		}
		q.acks[s] = struct{}{}
		q.ackMax = max(q.ackMax, s)
	}
	full = len(q.acks) >= ackGroupMax
	first = first && len(q.acks) > 0
	q.mu.Unlock()
	// Only the first ack of a group (a new deadline) or a full group
	// changes what the committer waits for; waking it on every batch would
	// cost a context switch per message while a backlog drains.
	if first || full {
		q.kick()
	}
	return nil
}

// ackPendingLocked marks seq acknowledged if it is waiting for its commit,
// and settles its Append when nothing of it is left to write.
func (q *Queue) ackPendingLocked(seq uint64) bool {
	if len(q.reqs) == 0 || seq < q.reqs[0].first {
		return false
	}
	i, _ := slices.BinarySearchFunc(q.reqs, seq, func(r *request, s uint64) int {
		switch {
		case r.first+uint64(len(r.recs)) <= s:
			return -1
		case r.first > s:
			return 1
		}
		return 0
	})
	if i >= len(q.reqs) || q.reqs[i].first > seq {
		return false
	}
	r := q.reqs[i]
	p := &r.recs[seq-r.first]
	if p.acked {
		return true
	}
	p.acked = true
	if p.class == ClassOccupancy {
		q.occPending--
	}
	if r.left--; r.left == 0 {
		r.settle(nil)
	}
	return true
}

// work is what one commit writes.
type work struct {
	reqs     []*request
	seqTo    uint64   // the highest sequence number handed out
	reserve  uint64   // numbers below this are reserved once the commit is durable
	acks     []uint64 // sorted
	classes  []Class  // classes with a data bucket when the work was taken
	ring     []pending
	memDrops map[string]uint64
	corrupt  map[uint64]struct{} // acks that remove undecodable records
	ackFull  bool                // committed early because a full ack group was pending
	ackSet   map[uint64]struct{} // the acks as taken; commit sorts them into acks
	state    map[string][]byte   // SetState values to write
	outAcks  [][]uint64          // per output (Options.Outputs), sorted
}

// run is the committer: the only goroutine that writes to the database.
func (q *Queue) run() {
	defer close(q.done)
	// Turn a fault on the memory map (file damaged under us) into a panic
	// that commit recovers, instead of a crash.
	debug.SetPanicOnFault(true)
	timer := q.clock.NewTimer(time.Hour)
	timer.Stop()
	for {
		q.salvageIfDamaged()
		q.mu.Lock()
		w, wait, exit := q.takeLocked(q.clock.Now())
		q.mu.Unlock()
		if exit {
			return
		}
		if w != nil {
			q.commit(w)
			continue
		}
		if q.compactIfQuiet(&wait) {
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-q.wake:
		case <-timer.Chan():
		}
		timer.Stop()
	}
}

// salvageIfDamaged salvages the file when a reader found it damaged.
func (q *Queue) salvageIfDamaged() {
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
}

// takeLocked decides whether to commit now; if not, how long to wait
// (0: until woken).
func (q *Queue) takeLocked(now time.Time) (w *work, wait time.Duration, exit bool) {
	q.dropAckedLocked()
	hasWork := len(q.reqs) > 0 || len(q.acks) > 0 || q.outPendingLocked() > 0 || len(q.ring) > 0 || len(q.memDrops) > 0 || len(q.statePending) > 0 ||
		(q.closing && q.reserved > q.nextSeq) // a clean close gives the unused numbers back
	if !hasWork {
		return nil, 0, q.closing
	}
	if q.closing && q.finalTried {
		return nil, 0, true
	}
	due, next := q.dueLocked(now)
	if !due {
		return nil, max(next.Sub(now), time.Millisecond), false
	}
	if q.closing {
		q.finalTried = true
	}
	w = &work{reqs: q.reqs, ring: q.ring, memDrops: maps.Clone(q.memDrops), classes: slices.Clone(q.classes),
		ackFull: len(q.acks) >= ackGroupMax, corrupt: q.corrupt, seqTo: q.nextSeq - 1, reserve: q.nextSeq,
		state: q.takeStateLocked(), outAcks: q.takeOutputsLocked()}
	if !q.closing {
		w.reserve += reserveBlock
	}
	// The set itself goes to the commit: nobody writes to it any more, so
	// commit sorts it outside mu, which Ack and ReadAfter wait for.
	w.ackSet, q.ackFlight = q.acks, q.acks
	q.acks, q.ackSpare = q.ackSpare, nil
	q.ackFlightMax, q.ackMax = q.ackMax, 0
	q.corrupt = nil
	q.flight = q.reqs
	q.reqs, q.reqBytes, q.occPending = nil, 0, 0
	q.ringFlight = len(q.ring)
	q.ring, q.ringBytes = nil, 0
	return w, 0, false
}

// dropAckedLocked lets go of the appends at the head of the queue that were
// acknowledged whole before their commit: they will never be written.
func (q *Queue) dropAckedLocked() {
	n := 0
	for n < len(q.reqs) && q.reqs[n].left < 0 && q.reqs[n].err == nil {
		for _, p := range q.reqs[n].recs {
			q.reqBytes -= len(p.val)
		}
		q.reqs[n] = nil
		n++
	}
	if n > 0 {
		q.reqs = q.reqs[n:]
		if len(q.reqs) == 0 {
			q.reqs, q.reqBytes = nil, 0
		}
	}
}

// reserveLowLocked says whether the durable reservation of sequence
// numbers runs short, so that a commit must extend it even if it has
// nothing else to write.
func (q *Queue) reserveLowLocked() bool {
	return q.nextSeq+reserveBlock/2 > q.reserved
}

// dueLocked says whether the pending work is due now, and if not, when.
// A group's deadline is its oldest record not yet acknowledged plus
// CommitInterval (OccupancyWindow for an occupancy change); acks alone
// wait CommitInterval too and otherwise ride with the next group.
func (q *Queue) dueLocked(now time.Time) (due bool, next time.Time) {
	switch {
	case q.closing:
		return true, next
	case q.diskErr != nil:
		return !now.Before(q.retryAt), q.retryAt
	}
	at := func(t time.Time) {
		due = due || !now.Before(t)
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if len(q.reqs) > 0 {
		at(q.reqs[0].at.Add(q.opts.CommitInterval))
		if q.occPending > 0 {
			at(q.oldestOccupancyLocked().Add(min(q.opts.CommitInterval, OccupancyWindow)))
		}
		due = due || q.reqBytes >= q.groupMax || q.reserveLowLocked()
	}
	if n := len(q.acks) + q.outDueLocked(); n > 0 {
		at(q.ackAt.Add(q.opts.CommitInterval))
		due = due || n >= ackGroupMax
	}
	if len(q.reqs) == 0 && len(q.acks) == 0 && q.outPendingLocked() == 0 {
		due = true // drop counts of a ring that was flushed but not persisted
	}
	return due, next
}

// oldestOccupancyLocked is the append time of the oldest occupancy change
// waiting for its commit (occPending > 0).
func (q *Queue) oldestOccupancyLocked() time.Time {
	for _, r := range q.reqs {
		for _, p := range r.recs {
			if p.class == ClassOccupancy && !p.acked {
				return r.at
			}
		}
	}
	return time.Time{}
}

// commitResult carries what a commit learned back to the Queue.
type commitResult struct {
	added      int
	reports    int // of added, reports from PutReport
	removed    int
	corrupt    uint64
	drops      map[string]uint64
	newClasses []Class

	count, nextSeq, oldestSeq uint64
	live                      int64
	oldestTime                time.Time

	outProgress, outDropped []uint64 // per output (progress.go)
}

// commit writes w in one transaction and settles the waiting appends.
func (q *Queue) commit(w *work) {
	w.acks = sortedAcks(w.ackSet)
	var res commitResult
	err := q.update(w, &res)
	if errors.Is(err, errDamaged) {
		q.log.Error("buffer: file damaged while running; salvaging it now", "file", q.path, "err", err)
		if serr := q.salvageRunning(err); serr != nil {
			err = fmt.Errorf("%w (salvage failed: %v)", err, serr)
		} else {
			q.mu.Lock()
			w.classes = slices.Clone(q.classes)
			q.mu.Unlock()
			err = q.update(w, &res)
		}
	}

	q.mu.Lock()
	q.ackFlight, q.ackFlightMax = nil, 0
	q.flight, q.ringFlight = nil, 0
	if w.ackSet != nil && len(w.ackSet) <= 2*ackGroupMax {
		// Its storage serves a later group, unless a stall made it big.
		clear(w.ackSet)
		q.ackSpare = w.ackSet
	}
	q.gen++ // readers with a snapshot from before this commit read again
	q.outputsDoneLocked(err == nil, res.outProgress, res.outDropped)
	if err != nil {
		waiting := q.failedLocked(w, err)
		q.mu.Unlock()
		nd := fmt.Errorf("%w: %v", ErrNotDurable, err)
		for _, r := range append(w.reqs, waiting...) {
			r.settle(nd) // those acknowledged whole are settled already
		}
		return
	}
	q.settledLocked(w, &res)
	q.mu.Unlock()
	q.afterCommit(w, &res)
}

// sortedAcks returns the acknowledged numbers in ascending order. While a
// backlog drains they are one dense range, written out without sorting:
// sorting 8,192 numbers from a map was 5 % of a drain's CPU.
func sortedAcks(set map[uint64]struct{}) []uint64 {
	if len(set) == 0 {
		return nil
	}
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for s := range set {
		lo, hi = min(lo, s), max(hi, s)
	}
	if hi-lo+1 != uint64(len(set)) {
		return slices.Sorted(maps.Keys(set))
	}
	acks := make([]uint64, len(set))
	for i := range acks {
		acks[i] = lo + uint64(i)
	}
	return acks
}

// failedLocked puts the work of a failed commit back: acks to retry,
// records into the memory ring in order. It returns the appends that were
// waiting for the next commit: they join the ring too and return now.
func (q *Queue) failedLocked(w *work, err error) (waiting []*request) {
	if len(w.acks) > 0 && q.acks == nil {
		q.acks = make(map[uint64]struct{}, len(w.acks))
	}
	for _, s := range w.acks {
		q.acks[s] = struct{}{}
		q.ackMax = max(q.ackMax, s)
	}
	if len(w.corrupt) > 0 && q.corrupt == nil {
		q.corrupt = map[uint64]struct{}{}
	}
	maps.Copy(q.corrupt, w.corrupt)
	q.restoreStateLocked(w.state)
	if len(q.acks) > 0 && q.ackAt.IsZero() {
		q.ackAt = q.clock.Now()
	}
	// Older ring first, then the group, then whatever arrived during the
	// commit.
	later := q.ring
	q.ring, q.ringBytes = nil, 0
	q.toRingLocked(w.ring)
	for _, r := range w.reqs {
		q.toRingLocked(r.recs)
	}
	q.toRingLocked(later)
	waiting = q.reqs
	q.reqs, q.reqBytes, q.occPending = nil, 0, 0
	for _, r := range waiting {
		q.toRingLocked(r.recs)
	}
	if q.diskErr == nil {
		q.log.Error("buffer: cannot write to disk; holding records in memory", "file", q.path, "err", err)
	} else {
		q.log.Warn("buffer: disk still refuses writes", "file", q.path, "err", err, "memory", len(q.ring))
	}
	q.diskErr = err
	q.retryAt = q.clock.Now().Add(q.retryDelay)
	q.retryDelay = min(2*q.retryDelay, maxRetryDelay)
	return waiting
}

// settledLocked takes in what a successful commit changed.
func (q *Queue) settledLocked(w *work, res *commitResult) {
	if q.diskErr != nil {
		q.log.Info("buffer: disk accepts writes again", "file", q.path, "written_from_memory", len(w.ring))
	}
	q.diskErr = nil
	q.retryDelay = firstRetryDelay
	for k, n := range w.memDrops {
		if q.memDrops[k] -= n; q.memDrops[k] == 0 {
			delete(q.memDrops, k)
		}
	}
	q.countDropsLocked(w.memDrops, false)
	q.countDropsLocked(res.drops, true)
	q.st.Corrupt += res.corrupt
	q.maybeLogDropsLocked(false)
	for _, c := range res.newClasses {
		if !slices.Contains(q.classes, c) {
			q.classes = append(q.classes, c)
		}
	}
	slices.Sort(q.classes)
	q.st.Count = res.count
	q.st.Bytes = res.live
	q.st.NextSeq = res.nextSeq
	q.reserved = max(q.reserved, w.reserve)
	q.st.OldestSeq = res.oldestSeq
	q.st.OldestTime = res.oldestTime
	q.st.Commits++
	if len(q.ring) > 0 || len(q.memDrops) > 0 {
		q.kick() // records that reached the ring during this commit
	}
}

// countDropsLocked adds committed drops to Stats (and to the drop log).
func (q *Queue) countDropsLocked(drops map[string]uint64, log bool) {
	if q.st.Dropped == nil {
		q.st.Dropped = map[string]uint64{}
	}
	for k, n := range drops {
		q.st.Dropped[k] += n
		q.st.DroppedTotal += n
		if log {
			q.dropLog[k] += n
		}
	}
}

// afterCommit wakes the waiting appends and readers, and compacts the file
// when a drain left it mostly free.
func (q *Queue) afterCommit(w *work, res *commitResult) {
	// Readers first, then the appends: an append that returns has caused
	// every notification it will cause, so a caller that takes one after its
	// append finds none left over from that commit.
	if res.added > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
		q.notifyOutputs()
	}
	for _, r := range w.reqs {
		r.settle(nil) // nobody else settles a request taken by a commit
	}
	if w.ackFull {
		q.fullAt = q.clock.Now()
	}
	if res.removed > 0 && shouldCompact(q.fileBytes(), res.live, 16) {
		if quietAt := q.fullAt.Add(drainQuiet); q.clock.Now().Before(quietAt) {
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
		if err := q.db.Update(func(tx *bolt.Tx) error { return q.apply(tx, &work{classes: w.classes}, &trim) }); err != nil {
			return err
		}
		q.mu.Lock()
		q.countDropsLocked(trim.drops, true)
		q.mu.Unlock()
	}
}
