package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// txn is the state of one write transaction: the bookkeeping it updates
// and the data buckets it touched.
type txn struct {
	tx      *bolt.Tx
	m       *bolt.Bucket
	live    int64
	count   uint64
	classes []Class // classes with a data bucket, ascending
	buckets map[Class]*bolt.Bucket
	res     *commitResult
	outs    *outTxn // several outputs (progress.go); nil with one
}

// apply is the body of a commit: acks, then appends (the ring first, it is
// older), then the bound, then the bookkeeping.
func (q *Queue) apply(tx *bolt.Tx, w *work, res *commitResult) error {
	m := tx.Bucket(bucketMeta)
	t := &txn{tx: tx, m: m, live: int64(getU64(m, keyLive)), count: getU64(m, keyCount),
		classes: slices.Clone(w.classes), buckets: map[Class]*bolt.Bucket{}, res: res}
	if err := t.beginOutputs(q, w); err != nil {
		return err
	}
	if err := t.deleteAcks(w.acks, w.corrupt); err != nil {
		return err
	}
	for _, r := range w.ring {
		if _, acked := w.ackSet[r.seq]; acked {
			continue // sent before a failed commit, acknowledged since
		}
		if err := t.put(r); err != nil {
			return err
		}
	}
	for _, req := range w.reqs {
		for _, r := range req.recs {
			if r.acked {
				continue // the broker has it: never written
			}
			if err := t.put(r); err != nil {
				return err
			}
		}
	}
	if err := t.applyOutputs(q, w); err != nil {
		return err
	}
	if err := t.m.SetSequence(max(t.m.Sequence(), w.seqTo)); err != nil {
		return err
	}
	if w.reserve > getU64(t.m, keyReserved) || w.reserve == w.seqTo+1 {
		if err := t.m.Put(keyReserved, u64(w.reserve)); err != nil {
			return err
		}
	}
	// A commit that only stores a report drops nothing: the report was made
	// from the counters as they are (see PutReport).
	if res.reports == 0 || res.added > res.reports {
		if err := t.enforceBound(q.limit); err != nil {
			return err
		}
	}
	if err := t.putState(w.state); err != nil {
		return err
	}
	if err := t.writeOutputs(q); err != nil {
		return err
	}
	if t.outs != nil {
		res.outProgress, res.outDropped = t.outs.progress, t.outs.dropped
	}
	return t.writeMeta(w.memDrops)
}

// bucket returns the data bucket of a class, creating it if asked.
func (t *txn) bucket(c Class, create bool) (*bolt.Bucket, error) {
	if b, ok := t.buckets[c]; ok {
		return b, nil
	}
	b := t.tx.Bucket(dataName(c))
	if b == nil {
		if !create {
			return nil, nil
		}
		var err error
		if b, err = t.tx.CreateBucket(dataName(c)); err != nil {
			return nil, err
		}
		t.res.newClasses = append(t.res.newClasses, c)
		t.classes = append(t.classes, c)
		slices.Sort(t.classes)
	}
	b.FillPercent = fillPercent
	t.buckets[c] = b
	return b, nil
}

// deleteAcks deletes the acknowledged records (acks sorted ascending);
// those in corrupt are counted as corrupt.
//
// The deletes walk each bucket with one cursor, from the highest ack down:
// Bucket.Get and Bucket.Delete would each build a cursor with a fresh
// search stack (about 300 bytes of garbage per ack) and search from the
// root, and deleting the last element of a node moves no others, while
// deleting the first moves all of them. After a delete the cursor's Prev is
// the next candidate (acks come in runs); a key is deleted only after it
// compared equal to an ack.
func (t *txn) deleteAcks(acks []uint64, corrupt map[uint64]struct{}) error {
	if len(acks) == 0 {
		return nil
	}
	var curs merge
	for _, c := range t.classes {
		if b, err := t.bucket(c, false); err == nil && b != nil {
			curs = append(curs, head{c: b.Cursor()})
		}
	}
	var k [8]byte
	for i := len(acks) - 1; i >= 0; i-- {
		binary.BigEndian.PutUint64(k[:], acks[i])
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
		if err := t.remove(cu.c, cu.v); err != nil {
			return err
		}
		if _, bad := corrupt[acks[i]]; bad {
			t.res.corrupt++
		}
		cu.k, cu.v = cu.c.Prev()
	}
	return nil
}

// remove deletes the element under c, whose value is v, from the counts.
func (t *txn) remove(c *bolt.Cursor, v []byte) error {
	t.live -= int64(elemOverhead + len(v))
	t.count--
	t.res.removed++
	return c.Delete()
}

// put stores one record under its sequence number. A report (from
// PutReport) first replaces the unsent records of its class.
func (t *txn) put(r pending) error {
	b, err := t.bucket(r.class, true)
	if err != nil {
		return err
	}
	if r.replace {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			if err := t.remove(c, v); err != nil {
				return err
			}
		}
		t.res.reports++
	}
	if r.seq >= seqLimit {
		return fmt.Errorf("sequence %d is beyond 2^53", r.seq)
	}
	if err := b.Put(seqKey(r.seq), r.val); err != nil {
		return err
	}
	t.live += int64(elemOverhead + len(r.val))
	t.count++
	t.res.added++
	return nil
}

// writeMeta writes the counters and the low-water mark, and fills in the
// result's snapshot.
func (t *txn) writeMeta(memDrops map[string]uint64) error {
	if t.count == 0 {
		t.live = 0 // nothing left to count; clears any drift
	}
	m := t.m
	dropped := getU64(m, keyDropped)
	for _, d := range []map[string]uint64{t.res.drops, memDrops} {
		for k, n := range d {
			name := []byte(dropPrefix + k)
			if err := m.Put(name, u64(getU64(m, name)+n)); err != nil {
				return err
			}
			dropped += n
		}
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyDropped, dropped},
		{keyLive, uint64(max(t.live, 0))},
		{keyCount, t.count},
		{keyCorrupt, getU64(m, keyCorrupt) + t.res.corrupt},
	} {
		if err := m.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	snapshot(t.tx, m, t.res)
	low := t.res.oldestSeq
	if low == 0 {
		low = t.res.nextSeq
	}
	return m.Put(keyLow, u64(low))
}

// snapshot fills the stats a commit or open leaves behind.
func snapshot(tx *bolt.Tx, m *bolt.Bucket, res *commitResult) {
	res.live = int64(getU64(m, keyLive))
	res.count = getU64(m, keyCount)
	res.nextSeq = m.Sequence() + 1
	res.oldestSeq, res.oldestTime = 0, time.Time{}
	var classes []Class
	_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if c, ok := isData(name); ok {
			classes = append(classes, c)
		}
		return nil
	})
	heads := seekAll(tx, classes, nil)
	if i := heads.oldest(); i >= 0 {
		res.oldestSeq = keySeq(heads[i].k)
		if rec, err := decodeRecord(heads[i].v); err == nil {
			res.oldestTime = rec.time
		}
	}
}
