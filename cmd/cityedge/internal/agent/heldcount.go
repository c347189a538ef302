package agent

import (
	"context"
	"slices"
	"sort"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/uplink/senml"
)

// The held count (status clock.held, --diagnose): the readings of this boot
// stamped while the wall clock was not trusted that are still in the buffer
// and that the clock rule would hold now. It does not depend on the
// forwarder having looked at them, so it is right while the uplink is down.
// The agent notes each such reading as the buffer stores it (committed),
// forgets it once the broker acknowledged it (acked), and forgets what the
// buffer's bound dropped (it drops the oldest first: every seq below the
// buffer's oldest is gone). Readings of this boot buffered by an earlier run
// of the agent (a restart within the boot) are counted by one read of the
// buffer in the background (countEarlierRun), the first time the clock is
// not trusted; until it is done the count leaves them out.

// seqRange is the sequence numbers lo..hi, both included.
type seqRange struct{ lo, hi uint64 }

// seqSet is a set of sequence numbers kept as sorted, disjoint ranges:
// readings are stored in runs, so a few ranges hold thousands of them.
type seqSet struct {
	r []seqRange
	n uint64
}

// add puts lo..hi into the set.
func (s *seqSet) add(lo, hi uint64) {
	if hi < lo {
		return
	}
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].hi+1 >= lo })
	j := i
	for j < len(s.r) && s.r[j].lo <= hi+1 {
		lo, hi = min(lo, s.r[j].lo), max(hi, s.r[j].hi)
		s.n -= s.r[j].hi - s.r[j].lo + 1
		j++
	}
	s.r = slices.Replace(s.r, i, j, seqRange{lo, hi})
	s.n += hi - lo + 1
}

// remove takes seq out of the set.
func (s *seqSet) remove(seq uint64) {
	i := sort.Search(len(s.r), func(i int) bool { return s.r[i].hi >= seq })
	if i == len(s.r) || s.r[i].lo > seq {
		return
	}
	s.n--
	g := s.r[i]
	switch {
	case g.lo == g.hi:
		s.r = slices.Delete(s.r, i, i+1)
	case seq == g.lo:
		s.r[i].lo++
	case seq == g.hi:
		s.r[i].hi--
	default:
		s.r[i].hi = seq - 1
		s.r = slices.Insert(s.r, i+1, seqRange{seq + 1, g.hi})
	}
}

// dropBelow takes every seq below seq out of the set.
func (s *seqSet) dropBelow(seq uint64) {
	for len(s.r) > 0 && s.r[0].lo < seq {
		if s.r[0].hi < seq {
			s.n -= s.r[0].hi - s.r[0].lo + 1
			s.r = s.r[1:]
			continue
		}
		s.n -= seq - s.r[0].lo
		s.r[0].lo = seq
	}
}

func (s *seqSet) count() uint64 { return s.n }

// committed notes the readings the buffer just stored, numbered from first:
// those of this boot stamped with an untrusted clock, split by whether
// their time is before the build date (such a time never leaves, not even
// after clock.hold).
func (c *clockRule) committed(recs []buffer.Record, first uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range recs {
		if r.Boot == nil || r.Boot.ID != c.boot {
			continue
		}
		seq := first + uint64(i)
		if t, ok := senml.StoredTime(r.Data); ok && t.Before(c.build) {
			c.early.add(seq, seq)
		} else {
			c.late.add(seq, seq)
		}
	}
}

// report notes a drop report stored as seq; it replaced the unsent one
// before it (buffer.PutReport).
func (c *clockRule) report(rec buffer.Record, seq uint64) {
	c.mu.Lock()
	if c.lastReport != 0 {
		c.early.remove(c.lastReport)
		c.late.remove(c.lastReport)
	}
	c.lastReport = seq
	c.mu.Unlock()
	c.committed([]buffer.Record{rec}, seq)
}

// acked forgets readings the broker acknowledged.
func (c *clockRule) acked(seqs []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scanning {
		// The scan may have read these before the ack: take them out of
		// what it found when it is done.
		for _, s := range seqs {
			if s < c.earlierBelow {
				c.ackedScan.add(s, s)
			}
		}
	}
	if c.early.count()+c.late.count() == 0 {
		return
	}
	for _, s := range seqs {
		c.early.remove(s)
		c.late.remove(s)
	}
}

// held is how many buffered readings the clock rule holds now.
func (c *clockRule) held(st buffer.Stats) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case st.Count == 0:
		c.early, c.late = seqSet{}, seqSet{}
	case st.OldestSeq > 0:
		c.early.dropBelow(st.OldestSeq)
		c.late.dropBelow(st.OldestSeq)
	}
	if c.tr.Trusted() {
		return 0 // they leave corrected
	}
	n := c.early.count()
	if !c.tr.HoldOver() {
		n += c.late.count()
	}
	return min(n, st.Count)
}

// earlierRun notes that what q holds now is an earlier run's, for run to
// count (countEarlierRun). Called before this run buffers anything.
func (c *clockRule) earlierRun(q interface {
	ReadAfter(after uint64, max, maxBytes int) ([]buffer.Entry, error)
	Stats() buffer.Stats
}) {
	st := q.Stats()
	if st.Count == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.earlier, c.earlierBelow = q.ReadAfter, st.NextSeq
}

// beginEarlierCount reports whether countEarlierRun is to run now: there is
// an earlier run's buffer to read and its count has not begun. From here
// acked notes the acks countEarlierRun's result must leave out.
func (c *clockRule) beginEarlierCount() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.earlier == nil || c.scanned {
		return false
	}
	c.scanned, c.scanning = true, true
	return true
}

// earlierScanBatch is how many records one read of countEarlierRun takes.
const earlierScanBatch = 512

// countEarlierRun notes the readings of this boot with an untrusted stamp
// that an earlier run of the agent buffered (seq below earlierBelow), as
// committed notes this run's. It reads the buffer once, in batches, beside
// sampling and the uplink; acks that arrive meanwhile are taken out at the
// end. A read error leaves those readings uncounted (logged once).
func (c *clockRule) countEarlierRun(ctx context.Context) {
	var early, late seqSet
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		early.subtract(&c.ackedScan)
		late.subtract(&c.ackedScan)
		c.early.union(&early)
		c.late.union(&late)
		c.scanning, c.ackedScan = false, seqSet{}
	}()
	var after uint64
	for after+1 < c.earlierBelow && ctx.Err() == nil {
		es, err := c.earlier(after, earlierScanBatch, 0)
		if err != nil {
			c.log.Warn("held count: cannot read the readings an earlier run buffered; clock.held leaves them out", "err", err)
			return
		}
		if len(es) == 0 {
			return
		}
		for i := range es {
			e := &es[i]
			if e.Seq >= c.earlierBelow {
				return
			}
			after = e.Seq
			if e.Boot == nil || e.Boot.ID != c.boot {
				continue
			}
			if t, ok := senml.StoredTime(e.Data); ok && t.Before(c.build) {
				early.add(e.Seq, e.Seq)
			} else {
				late.add(e.Seq, e.Seq)
			}
		}
	}
}

// union adds every number of o to s.
func (s *seqSet) union(o *seqSet) {
	for _, r := range o.r {
		s.add(r.lo, r.hi)
	}
}

// subtract takes every number of o out of s.
func (s *seqSet) subtract(o *seqSet) {
	if len(o.r) == 0 || len(s.r) == 0 {
		return
	}
	var out []seqRange
	var n uint64
	j := 0
	for _, r := range s.r {
		lo := r.lo
		for lo <= r.hi {
			for j < len(o.r) && o.r[j].hi < lo {
				j++
			}
			if j == len(o.r) || o.r[j].lo > r.hi {
				out = append(out, seqRange{lo, r.hi})
				n += r.hi - lo + 1
				break
			}
			if o.r[j].lo > lo {
				out = append(out, seqRange{lo, o.r[j].lo - 1})
				n += o.r[j].lo - lo
			}
			if o.r[j].hi >= r.hi {
				break
			}
			lo = o.r[j].hi + 1
		}
	}
	s.r, s.n = out, n
}
