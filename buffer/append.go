package buffer

import (
	"context"
	"fmt"
	"time"
)

// Record is one item to append.
type Record struct {
	Key      string // producer (sensor name): drops are counted per key
	Priority Class  // ClassEnvironmental, ClassOccupancy, ... (see dropOrder)
	Data     []byte
	// Boot, when set, is kept with the record and read back in Entry.Boot
	// (file format 4 on; see BootStamp).
	Boot *BootStamp
}

// Append stores records durably: when it returns nil each of them is
// committed and fsynced, or was acknowledged (Ack) before its commit fell
// due and so never needed writing; first is the sequence number of
// recs[0], the others following in order. The records are readable at once
// (ReadAfter), before their commit. Appends within CommitInterval share one
// transaction. If ctx ends while waiting, Append returns ctx.Err() and the
// records are still committed with their group. If the disk refuses the
// write, the error wraps ErrNotDurable and the records wait in memory (see
// Options).
func (q *Queue) Append(ctx context.Context, recs []Record) (first uint64, err error) {
	return q.add(ctx, recs, false)
}

// add is Append; with replace, each record is a report (see PutReport).
func (q *Queue) add(ctx context.Context, recs []Record, replace bool) (first uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return 0, nil
	}
	now := q.clock.Now()
	req := &request{recs: make([]pending, len(recs)), at: now, left: len(recs), done: make(chan struct{})}
	size := 0
	for i, r := range recs {
		p, err := q.encode(r, now)
		if err != nil {
			return 0, err
		}
		p.replace = replace
		req.recs[i] = p
		size += len(p.val)
	}

	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return 0, ErrClosed
	}
	req.first = q.nextSeq
	for i := range req.recs {
		req.recs[i].seq = q.nextSeq
		q.nextSeq++
	}
	if q.diskErr != nil {
		// Do not hammer a failing disk: the committer retries on its schedule.
		q.toRingLocked(req.recs)
		err := fmt.Errorf("%w: %v", ErrNotDurable, q.diskErr)
		q.mu.Unlock()
		return req.first, err
	}
	for _, r := range req.recs {
		if r.class == ClassOccupancy {
			q.occPending++
		}
	}
	q.reqs = append(q.reqs, req)
	q.reqBytes += size
	q.mu.Unlock()
	q.kick()
	select {
	case q.notify <- struct{}{}: // readable now
	default:
	}
	q.notifyOutputs()

	select {
	case <-req.done:
		return req.first, req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// PutReport stores the agent's report of its drop counters as a record of
// ClassReport (rec.Priority is ignored) and returns its sequence number.
// The queue keeps at most one unsent report: this one replaces any earlier
// report not yet acknowledged (the newest counters say all the older ones
// did). A commit that stores only a report drops nothing, so a report made
// from Stats right before it still equals Stats after it; the next append
// applies the bound, where the report ranks with environmental readings.
// Otherwise it behaves like Append. (Append with ClassReport stores an
// ordinary record of that class, as files of format 1 hold.)
func (q *Queue) PutReport(ctx context.Context, rec Record) (uint64, error) {
	rec.Priority = ClassReport
	return q.add(ctx, []Record{rec}, true)
}

// encode checks a record and encodes its stored form.
func (q *Queue) encode(r Record, now time.Time) (pending, error) {
	if len(r.Key) > maxKeyLen {
		return pending{}, fmt.Errorf("buffer: append: key %.40q… is %d bytes, longer than %d", r.Key, len(r.Key), maxKeyLen)
	}
	n := encodedLen(r.Key, r.Data, now, r.Boot)
	if n+elemOverhead > q.maxRecord {
		return pending{}, fmt.Errorf("buffer: append: record for key %q is %d bytes, more than a quarter of the buffer bound", r.Key, n)
	}
	return pending{class: r.Priority, key: r.Key, val: encodeRecord(make([]byte, 0, n), r.Priority, now, r.Key, r.Data, r.Boot)}, nil
}

// toRingLocked keeps records in memory, dropping the oldest beyond
// MemoryBytes (counted per key, persisted with the next commit).
func (q *Queue) toRingLocked(recs []pending) {
	for _, r := range recs {
		if r.acked {
			continue // the broker has it
		}
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
	if len(q.dropLog) == 0 || (!force && q.clock.Since(q.dropLogAt) < dropLogEvery) {
		return
	}
	var total uint64
	for _, n := range q.dropLog {
		total += n
	}
	q.log.Warn("buffer: full, dropped oldest records", "file", q.path, "dropped", total,
		"per_key", q.dropLog, "max_bytes", q.opts.MaxBytes, "memory", q.diskErr != nil)
	q.dropLog = map[string]uint64{}
	q.dropLogAt = q.clock.Now()
}
