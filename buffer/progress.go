package buffer

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Per-output progress (format 4).
//
// With Options.Outputs naming two or more outputs (MQTT and Sentilo), a
// record leaves the queue only once every one of them has acknowledged it.
// Each output reads and acknowledges through its own view (Output); what an
// output has acknowledged is durable in the file, in the commits that acks
// already cause:
//
//   - meta "progress/<output>": every record below this number that is still
//     in the queue has been acknowledged by the output (it never gets it
//     again, after a restart or SIGKILL either);
//   - bucket "o<output>": one empty-valued key per record above the mark
//     that the output has acknowledged and another output has not (a held
//     Sentilo sensor, an output that is down); removed as the mark passes;
//   - meta "odropped/<output>": records the bound dropped before this
//     output had them (drops are counted per output).
//
// An output's acknowledgements wait in memory until the next commit
// (within CommitInterval), like Ack's deletes: a crash in that window makes
// the output get those records again (at-least-once). A record that every
// output acknowledged before its commit is never written. With one output
// (or none named), nothing of this is stored and Output's Ack is Ack.
//
// An output named in the file but no longer in Options.Outputs is forgotten
// at Open: its marks go, and the records every remaining output has
// acknowledged are deleted.

var (
	progressPrefix = "progress/"
	outDropPrefix  = "odropped/"
	outBucketByte  = byte('o')
)

// progressWalkMax bounds how many records one commit's progress walk
// passes per output; the next commit continues.
const progressWalkMax = 65536

// outState is one output's acknowledgements.
type outState struct {
	name     string
	i        int
	progress uint64              // durable mark as of the last commit
	pend     map[uint64]struct{} // acked since the last commit, not by every output
	pendDue  int                 // of pend, acks of records already committed: they set a commit deadline
	flight   map[uint64]struct{} // in the running commit (read-only then)
	dropped  uint64              // persisted per-output drops as of the last commit
	notify   chan struct{}
}

// OutputStats is one output's part of Stats.
type OutputStats struct {
	Progress uint64 // every record below this has been acknowledged by the output
	Pending  int    // acknowledgements waiting for the next commit
	Dropped  uint64 // records the bound dropped before this output had them
}

// Output is one output's view of the queue: it reads the records the output
// has not acknowledged and acknowledges for that output alone.
type Output struct {
	q  *Queue
	st *outState // nil: the queue has a single output
}

func outBucketName(name string) []byte { return append([]byte{outBucketByte}, name...) }

// isOutBucket reports whether a top-level bucket name is an output's.
func isOutBucket(name []byte) bool { return len(name) > 1 && name[0] == outBucketByte }

// multi reports whether records wait for more than one output.
func (q *Queue) multi() bool { return len(q.outs) > 1 }

// Output returns the view of the named output; it must be one of
// Options.Outputs (or any name when fewer than two are configured).
func (q *Queue) Output(name string) (*Output, error) {
	if !q.multi() {
		return &Output{q: q}, nil
	}
	for _, o := range q.outs {
		if o.name == name {
			return &Output{q: q, st: o}, nil
		}
	}
	return nil, fmt.Errorf("buffer: output %q is not configured", name)
}

// Name is the output's name ("" for the single output).
func (o *Output) Name() string {
	if o.st == nil {
		return ""
	}
	return o.st.name
}

// Notify receives (coalesced) when records were appended, as Queue.Notify.
func (o *Output) Notify() <-chan struct{} {
	if o.st == nil {
		return o.q.notify
	}
	return o.st.notify
}

// Stats is the queue's Stats.
func (o *Output) Stats() Stats { return o.q.Stats() }

// ReadAfter is Queue.ReadAfter without the records this output has
// acknowledged.
func (o *Output) ReadAfter(after uint64, max int, maxBytes int) ([]Entry, error) {
	if o.st == nil {
		return o.q.ReadAfter(after, max, maxBytes)
	}
	return o.q.readAfter(after, max, maxBytes, o.st, nil)
}

// ReadInto is ReadAfter with the result in s: the entries and their Data
// are valid until the next ReadInto with s (Queue.ReadInto).
func (o *Output) ReadInto(s *Scratch, after uint64, max int, maxBytes int) ([]Entry, error) {
	if o.st == nil {
		return o.q.ReadInto(s, after, max, maxBytes)
	}
	return o.q.readAfter(after, max, maxBytes, o.st, s)
}

// Ack records that this output has the records. A record leaves the queue
// once every output has acknowledged it.
func (o *Output) Ack(seqs ...uint64) error {
	if o.st == nil {
		return o.q.Ack(seqs...)
	}
	return o.q.ackOutput(o.st, seqs)
}

// ackOutput is Output.Ack with several outputs.
func (q *Queue) ackOutput(o *outState, seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	kick := false
	for _, s := range seqs {
		if s < o.progress {
			continue
		}
		all := true
		for _, other := range q.outs {
			if other != o && !other.hasLocked(s) {
				all = false
				break
			}
		}
		if !all {
			if o.pend == nil {
				o.pend = map[uint64]struct{}{}
			}
			if _, dup := o.pend[s]; dup {
				continue
			}
			// An ack of a record still waiting for its commit rides with
			// that commit: it sets no deadline of its own (a deadline would
			// write records the other output is about to acknowledge).
			if len(q.reqs) == 0 || s < q.reqs[0].first {
				if len(q.acks) == 0 && q.outDueLocked() == 0 {
					q.ackAt = q.clock.Now()
					kick = true
				}
				o.pendDue++
			}
			o.pend[s] = struct{}{}
			continue
		}
		// Every output has it: delete it like Ack (never written when still
		// waiting for its commit).
		for _, other := range q.outs {
			if _, ok := other.pend[s]; ok {
				delete(other.pend, s)
				if len(q.reqs) == 0 || s < q.reqs[0].first {
					other.pendDue--
				}
			}
		}
		if q.ackPendingLocked(s) {
			continue
		}
		if len(q.acks) == 0 {
			q.ackAt = q.clock.Now()
			kick = true
		}
		if q.acks == nil {
			q.acks = map[uint64]struct{}{}
		}
		q.acks[s] = struct{}{}
		q.ackMax = max(q.ackMax, s)
	}
	if len(q.acks)+q.outDueLocked() >= ackGroupMax {
		kick = true
	}
	q.mu.Unlock()
	if kick {
		q.kick()
	}
	return nil
}

// hasLocked: the output acknowledged s as far as memory tells (the file may
// tell more; the commit asks it).
func (o *outState) hasLocked(s uint64) bool {
	if s < o.progress {
		return true
	}
	if _, ok := o.pend[s]; ok {
		return true
	}
	_, ok := o.flight[s]
	return ok
}

// outDueLocked counts the outputs' pending acks of committed records.
func (q *Queue) outDueLocked() int {
	n := 0
	for _, o := range q.outs {
		n += o.pendDue
	}
	return n
}

func (q *Queue) outPendingLocked() int {
	n := 0
	for _, o := range q.outs {
		n += len(o.pend)
	}
	return n
}

// takeOutputsLocked hands the outputs' pending acks to a commit.
func (q *Queue) takeOutputsLocked() [][]uint64 {
	if !q.multi() {
		return nil
	}
	out := make([][]uint64, len(q.outs))
	for i, o := range q.outs {
		o.flight, o.pend, o.pendDue = o.pend, nil, 0
		if len(o.flight) > 0 {
			out[i] = slices.Sorted(maps.Keys(o.flight))
		}
	}
	return out
}

// outputsDoneLocked ends a commit's hold on the outputs' acks: kept (ok)
// or put back for the next commit (failed).
func (q *Queue) outputsDoneLocked(ok bool, progress []uint64, dropped []uint64) {
	for i, o := range q.outs {
		if !ok {
			for s := range o.flight {
				if o.pend == nil {
					o.pend = map[uint64]struct{}{}
				}
				if _, dup := o.pend[s]; !dup {
					o.pend[s] = struct{}{}
					o.pendDue++
				}
			}
		} else if i < len(progress) {
			o.progress = max(o.progress, progress[i])
			o.dropped = dropped[i]
		}
		o.flight = nil
	}
}

// notifyOutputs wakes each output's reader: records were appended (they
// are readable at once) or a commit added records.
func (q *Queue) notifyOutputs() {
	for _, o := range q.outs {
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
}

// outputStatsLocked fills Stats.Outputs.
func (q *Queue) outputStatsLocked() map[string]OutputStats {
	if !q.multi() {
		return nil
	}
	m := make(map[string]OutputStats, len(q.outs))
	for _, o := range q.outs {
		m[o.name] = OutputStats{Progress: o.progress, Pending: len(o.pend) + len(o.flight), Dropped: o.dropped}
	}
	return m
}

// outTxn is the outputs' part of one write transaction.
type outTxn struct {
	acks     [][]uint64     // per output, sorted
	buckets  []*bolt.Bucket // per output
	progress []uint64
	dropped  []uint64
}

// has: output i acknowledged s (the mark, this commit's acks, the file).
func (t *txn) outHas(i int, s uint64) bool {
	o := t.outs
	if s < o.progress[i] {
		return true
	}
	if _, ok := slices.BinarySearch(o.acks[i], s); ok {
		return true
	}
	return o.buckets[i].Get(seqKey(s)) != nil
}

// find positions a cursor on record s; nil when it is not stored.
func (t *txn) find(s uint64) (*bolt.Cursor, []byte) {
	k := seqKey(s)
	for _, c := range t.classes {
		b, err := t.bucket(c, false)
		if err != nil || b == nil {
			continue
		}
		cur := b.Cursor()
		if ck, v := cur.Seek(k); bytes.Equal(ck, k) && v != nil {
			return cur, v
		}
	}
	return nil, nil
}

// applyOutputs runs after the commit's own deletes and puts: it deletes
// the records every output now has, keeps the marks of the others, and
// moves each output's progress mark up.
func (t *txn) applyOutputs(q *Queue, w *work) error {
	if t.outs == nil {
		return nil
	}
	o := t.outs
	for i, acks := range o.acks {
		for _, s := range acks {
			if s < o.progress[i] {
				continue
			}
			cur, v := t.find(s)
			if cur == nil {
				continue // deleted or dropped meanwhile
			}
			all := true
			for j := range o.acks {
				if j != i && !t.outHas(j, s) {
					all = false
					break
				}
			}
			if !all {
				if err := o.buckets[i].Put(seqKey(s), nil); err != nil {
					return err
				}
				continue
			}
			if err := t.remove(cur, v); err != nil {
				return err
			}
			for j := range o.buckets {
				if err := o.buckets[j].Delete(seqKey(s)); err != nil {
					return err
				}
			}
		}
	}
	// Progress: pass the records the output has, from its mark on.
	for i := range o.acks {
		p := o.progress[i]
		heads := seekAll(t.tx, t.classes, seqKey(p))
		end := true
		for n := 0; n < progressWalkMax; n++ {
			h := heads.oldest()
			if h < 0 {
				break
			}
			s := keySeq(heads[h].k)
			if !t.outHas(i, s) {
				p, end = s, false
				break
			}
			heads[h].k, heads[h].v = heads[h].c.Next()
			p = s + 1
		}
		if end && heads.oldest() < 0 {
			p = max(p, w.seqTo+1) // nothing stored above: everything handed out so far
		}
		// Marks below the progress are no longer needed.
		c := o.buckets[i].Cursor()
		for k, _ := c.First(); k != nil && keySeq(k) < p; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if p != o.progress[i] {
			o.progress[i] = p
			if err := t.m.Put([]byte(progressPrefix+q.outs[i].name), u64(p)); err != nil {
				return err
			}
		}
	}
	return nil
}

// outDrop accounts a record the bound drops: each output that did not have
// it counts a drop, and its marks go.
func (t *txn) outDrop(s uint64) error {
	if t.outs == nil {
		return nil
	}
	o := t.outs
	for i := range o.buckets {
		if !t.outHas(i, s) {
			o.dropped[i]++
		}
		if err := o.buckets[i].Delete(seqKey(s)); err != nil {
			return err
		}
	}
	return nil
}

// writeOutputs persists the per-output drop counters.
func (t *txn) writeOutputs(q *Queue) error {
	if t.outs == nil {
		return nil
	}
	for i, o := range q.outs {
		if err := t.m.Put([]byte(outDropPrefix+o.name), u64(t.outs.dropped[i])); err != nil {
			return err
		}
	}
	return nil
}

// beginOutputs prepares the outputs' part of a transaction.
func (t *txn) beginOutputs(q *Queue, w *work) error {
	if !q.multi() {
		return nil
	}
	o := &outTxn{acks: w.outAcks, buckets: make([]*bolt.Bucket, len(q.outs)),
		progress: make([]uint64, len(q.outs)), dropped: make([]uint64, len(q.outs))}
	if o.acks == nil {
		o.acks = make([][]uint64, len(q.outs))
	}
	for i, out := range q.outs {
		b, err := t.tx.CreateBucketIfNotExists(outBucketName(out.name))
		if err != nil {
			return err
		}
		b.FillPercent = fillPercent
		o.buckets[i] = b
		o.progress[i] = getU64(t.m, []byte(progressPrefix+out.name))
		o.dropped[i] = getU64(t.m, []byte(outDropPrefix+out.name))
	}
	t.outs = o
	return nil
}

// openOutputs sets up the outputs named in Options.Outputs at Open: loads
// their marks and forgets outputs no longer configured (deleting the
// records every remaining output has).
func (q *Queue) openOutputs() error {
	names := slices.Compact(slices.Sorted(slices.Values(q.opts.Outputs)))
	for i, n := range names {
		q.outs = append(q.outs, &outState{name: n, i: i, notify: make(chan struct{}, 1)})
	}
	return q.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		var stale [][]byte
		single := false // one output left, with marks from a run with several
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if isOutBucket(name) {
				if !slices.Contains(names, string(name[1:])) {
					stale = append(stale, bytes.Clone(name))
				} else if !q.multi() {
					single = true
				}
			}
			return nil
		})
		if len(stale) > 0 || single {
			if err := q.forgetOutputs(tx, m, stale, names); err != nil {
				return err
			}
		}
		for _, o := range q.outs {
			o.progress = getU64(m, []byte(progressPrefix+o.name))
			o.dropped = getU64(m, []byte(outDropPrefix+o.name))
		}
		return nil
	})
}

// forgetOutputs removes the marks of outputs no longer configured, then
// deletes the records that every remaining output has acknowledged.
func (q *Queue) forgetOutputs(tx *bolt.Tx, m *bolt.Bucket, stale [][]byte, names []string) error {
	for _, name := range stale {
		q.log.Warn("buffer: output no longer configured; forgetting its progress", "file", q.path, "output", string(name[1:]))
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		for _, p := range []string{progressPrefix, outDropPrefix} {
			if err := m.Delete([]byte(p + string(name[1:]))); err != nil {
				return err
			}
		}
	}
	if len(names) == 0 {
		return nil // an unnamed output: it has acknowledged nothing that is still here
	}
	// Records every remaining output has acknowledged.
	type mark struct {
		progress uint64
		b        *bolt.Bucket
	}
	var marks []mark
	for _, n := range names {
		mk := mark{progress: getU64(m, []byte(progressPrefix+n)), b: tx.Bucket(outBucketName(n))}
		if mk.progress == 0 && mk.b == nil {
			return nil // an output that has acknowledged nothing: nothing to delete
		}
		marks = append(marks, mk)
	}
	classes, err := topLevel(tx)
	if err != nil {
		return err
	}
	t := &txn{tx: tx, m: m, live: int64(getU64(m, keyLive)), count: getU64(m, keyCount),
		classes: classes, buckets: map[Class]*bolt.Bucket{}, res: &commitResult{}}
	for _, c := range classes {
		b := tx.Bucket(dataName(c))
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; {
			s := keySeq(k)
			all := true
			for _, mk := range marks {
				if s >= mk.progress && (mk.b == nil || mk.b.Get(k) == nil) {
					all = false
					break
				}
			}
			if all && v != nil {
				if err := t.remove(cur, v); err != nil {
					return err
				}
				k, v = cur.Seek(k)
				continue
			}
			k, v = cur.Next()
		}
	}
	if !q.multi() {
		for _, n := range names {
			if b := tx.Bucket(outBucketName(n)); b != nil {
				if err := tx.DeleteBucket(outBucketName(n)); err != nil {
					return err
				}
			}
			if err := m.Delete([]byte(progressPrefix + n)); err != nil {
				return err
			}
		}
	}
	if err := t.writeMeta(nil); err != nil {
		return err
	}
	q.st.Count, q.st.Bytes = t.res.count, t.res.live
	q.st.OldestSeq, q.st.OldestTime = t.res.oldestSeq, t.res.oldestTime
	return nil
}

// readAfter is ReadAfter for one of several outputs: it starts at the
// output's mark and skips what the output has acknowledged.
func (q *Queue) readAfter(after uint64, max int, maxBytes int, o *outState, s *Scratch) (out []Entry, err error) {
	q.mu.Lock()
	if p := o.progress; p > 0 && after < p-1 {
		after = p - 1
	}
	q.mu.Unlock()
	return q.readSkip(after, max, maxBytes, func(tx *bolt.Tx) func(uint64) bool {
		b := tx.Bucket(outBucketName(o.name))
		var cur *bolt.Cursor
		var ck []byte
		if b != nil {
			cur = b.Cursor()
		}
		// The mark as of this snapshot: a commit deletes the marks below
		// the progress it writes, so the two are read together.
		var p uint64
		if m := tx.Bucket(bucketMeta); m != nil {
			p = getU64(m, []byte(progressPrefix+o.name))
		}
		return func(s uint64) bool { // called with mu held
			if s < p || o.hasLocked(s) {
				return true
			}
			if cur == nil {
				return false
			}
			k := seqKey(s)
			if ck == nil || bytes.Compare(ck, k) < 0 {
				ck, _ = cur.Seek(k)
				if ck == nil {
					cur = nil
					return false
				}
			}
			return bytes.Equal(ck, k)
		}
	}, s)
}
