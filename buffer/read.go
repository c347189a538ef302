package buffer

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Entry is a queued record as read back.
type Entry struct {
	Seq      uint64
	Time     time.Time // when it was appended (millisecond precision)
	Key      string
	Priority Class
	Data     []byte     // a copy, safe to keep
	Boot     *BootStamp // the Record's Boot; nil when it had none
}

// ReadAfter returns up to max records with sequence numbers above after, in
// ascending order, stopping before the payloads exceed maxBytes (0: no byte
// limit; at least one record is returned). Records still waiting for their
// commit are included (their numbers are durably reserved, so a reader may
// send them). Acked records are skipped. A
// record that cannot be decoded is skipped, removed and counted in
// Stats().Corrupt.
func (q *Queue) ReadAfter(after uint64, max int, maxBytes int) (out []Entry, err error) {
	return q.readSkip(after, max, maxBytes, nil, nil)
}

// Scratch is the memory ReadInto reuses from one read to the next: a
// drain reads a batch per message, and a fresh slice of entries and copy
// of their data each time were a large part of its garbage. The zero value
// is ready; one Scratch serves one reader at a time.
type Scratch struct {
	entries []Entry
	data    []byte
}

// ReadInto is ReadAfter with the result in s: the entries and their Data
// are valid until the next ReadInto with s, which overwrites them.
func (q *Queue) ReadInto(s *Scratch, after uint64, max int, maxBytes int) ([]Entry, error) {
	return q.readSkip(after, max, maxBytes, nil, s)
}

// readSkip is ReadAfter (with s: ReadInto); skip, when not nil, makes
// inside the read transaction a test (called with mu held) of records to
// leave out.
func (q *Queue) readSkip(after uint64, max int, maxBytes int, skip func(*bolt.Tx) func(uint64) bool, s *Scratch) (out []Entry, err error) {
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
	for {
		q.mu.Lock()
		classes := slices.Clone(q.classes)
		gen := q.gen
		q.mu.Unlock()

		again := false
		err = q.db.View(func(tx *bolt.Tx) error {
			heads := seekAll(tx, classes, seqKey(after+1))
			var skipSeq func(uint64) bool
			if skip != nil {
				skipSeq = skip(tx)
			}
			// Holding mu here is safe: no holder of mu ever waits for bbolt.
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.gen != gen {
				// A commit finished after this snapshot was taken: what it
				// held in memory (records being written, acks being
				// deleted) is no longer there, and not in the snapshot
				// either. Read again.
				again = true
				return nil
			}
			out = q.collectLocked(heads, q.memAfterLocked(after), max, maxBytes, skipSeq, s)
			return nil
		})
		if !again {
			return out, err
		}
	}
}

// memAfterLocked returns the records waiting for (or in) their commit with
// numbers above after that a reader may have: reserved and not acked.
func (q *Queue) memAfterLocked(after uint64) (out []*pending) {
	for _, reqs := range [][]*request{q.flight, q.reqs} {
		i, _ := slices.BinarySearchFunc(reqs, after, func(r *request, s uint64) int {
			if r.first+uint64(len(r.recs)) <= s+1 {
				return -1
			}
			return 1
		})
		for _, r := range reqs[i:] {
			for j := range r.recs {
				p := &r.recs[j]
				if p.seq <= after || p.acked {
					continue
				}
				if p.seq >= q.reserved {
					return out
				}
				out = append(out, p)
			}
		}
	}
	return out
}

// collectLocked copies records from the merged cursors and the records in
// memory (ascending) into entries, in s's memory when s is not nil.
func (q *Queue) collectLocked(heads merge, mem []*pending, max, maxBytes int, skip func(uint64) bool, s *Scratch) (out []Entry) {
	total := 0
	// The copies share one buffer (arena), sized from the first record,
	// and a run of records of the same producer shares one Key string:
	// a drain reads a hundred records per batch, thousands of batches
	// a second, and one allocation per record was most of its garbage.
	var a arena
	if s != nil {
		clear(s.entries) // let go of what the last read pointed to
		out, a = s.entries[:0], arena(s.data[:0])
		defer func() {
			s.entries = out
			if cap(a) > cap(s.data) {
				s.data = a[:0] // the largest block serves the next read
			}
		}()
	}
	var key string
	var last uint64
	for len(out) < max {
		var seq uint64
		var k, v []byte
		i := heads.oldest()
		if len(mem) > 0 && (i < 0 || mem[0].seq <= keySeq(heads[i].k)) {
			seq, v = mem[0].seq, mem[0].val
			mem = mem[1:]
			k = seqKey(seq)
		} else if i >= 0 {
			k, v = heads[i].k, heads[i].v
			heads[i].k, heads[i].v = heads[i].c.Next()
			seq = keySeq(k)
		} else {
			break
		}
		if seq != 0 && seq == last {
			continue // committed while we looked: on disk and still in memory
		}
		last = seq
		if seq == 0 {
			q.badRecordLocked(seq, fmt.Errorf("%w: key of %d bytes", errBadRecord, len(k)))
			continue
		}
		if q.ackedLocked(seq) || skip != nil && skip(seq) {
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
		if cap(out) == 0 {
			out = make([]Entry, 0, min(max, 256))
		}
		// Room for the rest of the batch if it is like this record.
		want := min(len(rec.data)*min(max-len(out), 1024), 64<<10)
		if maxBytes > 0 {
			want = min(want, maxBytes-total+len(rec.data))
		}
		if string(rec.key) != key {
			key = string(rec.key)
		}
		out = append(out, Entry{Seq: seq, Time: rec.time, Key: key, Priority: rec.class, Data: a.copy(rec.data, want), Boot: rec.boot})
	}
	return out
}

// arena hands out copies that share one allocation.
type arena []byte

// copy returns a copy of b, allocating room for want bytes when the arena
// is full. The copy's capacity is cut to its length: appending to one
// never writes into the next.
func (a *arena) copy(b []byte, want int) []byte {
	if cap(*a)-len(*a) < len(b) {
		*a = make([]byte, 0, max(want, len(b)))
	}
	at := len(*a)
	*a = append(*a, b...)
	return (*a)[at:len(*a):len(*a)]
}

// head is a cursor of one data bucket and its current element.
type head struct {
	c    *bolt.Cursor
	k, v []byte
}

// merge walks the data buckets of several classes as one sequence, in key
// (sequence) order.
type merge []head

// seekAll positions a cursor in the bucket of each class at the first key
// at or after start (nil: the first key); buckets with nothing there are
// left out.
func seekAll(tx *bolt.Tx, classes []Class, start []byte) merge {
	m := make(merge, 0, len(classes))
	for _, c := range classes {
		if b := tx.Bucket(dataName(c)); b != nil {
			cur := b.Cursor()
			k, v := cur.First()
			if start != nil {
				k, v = cur.Seek(start)
			}
			if k != nil {
				m = append(m, head{cur, k, v})
			}
		}
	}
	return m
}

// oldest returns the index of the head with the smallest key, -1 if all
// are exhausted.
func (m merge) oldest() int {
	i := -1
	for j := range m {
		if m[j].k != nil && (i < 0 || bytes.Compare(m[j].k, m[i].k) < 0) {
			i = j
		}
	}
	return i
}

func (q *Queue) ackedLocked(seq uint64) bool {
	if seq > q.ackMax && seq > q.ackFlightMax {
		return false // a drain reads ahead of its acks: no lookups
	}
	if _, ok := q.ackFlight[seq]; ok {
		return true
	}
	_, ok := q.acks[seq]
	return ok
}

// badRecordLocked handles a record that cannot be decoded inside a sound
// tree (bit rot): it is logged, deleted like an acked one, since no
// receiver could use it, and counted as corrupt when the delete commits.
func (q *Queue) badRecordLocked(seq uint64, err error) {
	if q.clock.Since(q.badRecordAt) > dropLogEvery {
		q.badRecordAt = q.clock.Now()
		q.log.Error("buffer: damaged record skipped and removed", "file", q.path, "seq", seq, "err", err)
	}
	if seq == 0 {
		return // not addressable by sequence; the bound removes it when it is the oldest
	}
	if len(q.acks) == 0 {
		q.ackAt = q.clock.Now()
	}
	if q.acks == nil {
		q.acks = map[uint64]struct{}{}
	}
	if q.corrupt == nil {
		q.corrupt = map[uint64]struct{}{}
	}
	q.acks[seq] = struct{}{}
	q.ackMax = max(q.ackMax, seq)
	q.corrupt[seq] = struct{}{}
	q.kick() // a non-blocking send: fine under mu
}
