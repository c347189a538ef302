package agent

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestSeqSet(t *testing.T) {
	type op struct {
		kind   byte // 'a' add lo..hi, 'r' remove lo, 'd' dropBelow lo
		lo, hi uint64
	}
	for _, c := range []struct {
		name string
		ops  []op
		want []seqRange
	}{
		{"runs merge", []op{{'a', 1, 1}, {'a', 2, 2}, {'a', 3, 5}}, []seqRange{{1, 5}}},
		{"out of order and overlapping", []op{{'a', 10, 12}, {'a', 1, 2}, {'a', 5, 6}, {'a', 3, 4}, {'a', 11, 20}}, []seqRange{{1, 6}, {10, 20}}},
		{"remove splits, trims, deletes", []op{{'a', 1, 10}, {'a', 20, 20}, {'r', 5, 0}, {'r', 1, 0}, {'r', 10, 0}, {'r', 20, 0}, {'r', 15, 0}}, []seqRange{{2, 4}, {6, 9}}},
		{"dropBelow", []op{{'a', 1, 10}, {'a', 20, 30}, {'d', 5, 0}}, []seqRange{{5, 10}, {20, 30}}},
		{"dropBelow past ranges", []op{{'a', 1, 10}, {'a', 20, 30}, {'d', 25, 0}}, []seqRange{{25, 30}}},
		{"dropBelow everything", []op{{'a', 1, 10}, {'d', 11, 0}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s seqSet
			in := map[uint64]bool{}
			for _, o := range c.ops {
				switch o.kind {
				case 'a':
					s.add(o.lo, o.hi)
					for v := o.lo; v <= o.hi; v++ {
						in[v] = true
					}
				case 'r':
					s.remove(o.lo)
					delete(in, o.lo)
				case 'd':
					s.dropBelow(o.lo)
					for v := range in {
						if v < o.lo {
							delete(in, v)
						}
					}
				}
			}
			if !slices.Equal(s.r, c.want) {
				t.Errorf("ranges %v, want %v", s.r, c.want)
			}
			if s.count() != uint64(len(in)) {
				t.Errorf("count %d, want %d", s.count(), len(in))
			}
		})
	}
}

// TestHeldCountUplinkDown: status clock.held counts the readings the clock
// rule holds while nothing is sent (the uplink is down and the forwarder
// never looks at them), drops to 0 once the clock is trusted (they would
// leave corrected), counts them again after a step, and forgets those the
// broker acknowledged.
func TestHeldCountUplinkDown(t *testing.T) {
	epoch1970 := time.Unix(30, 0)
	for _, c := range []struct {
		name string
		err  time.Duration // the wall clock's error at boot
		hold time.Duration
		// held after 100 s, after 400 s, and after a step that follows
		// the sync at 400 s
		held100, held400, heldStep uint64
	}{
		// The 400 readings with a time before the build date are held
		// beyond clock.hold (DECISIONS 3); the two plausible ones taken at
		// the sync and at the step leave marked, clock.hold being over.
		{"stuck at 1970: held beyond clock.hold", epoch1970.Sub(ruleTruth), 5 * time.Minute, 100, 400, 400},
		{"plausible time: held for clock.hold, then none", 2 * time.Minute, 5 * time.Minute, 100, 0, 0},
		{"plausible time, clock.hold 1h: all held", 2 * time.Minute, time.Hour, 100, 400, 402},
		{"clock.hold = 0, plausible time: none", 2 * time.Minute, 0, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := clockwork.NewFakeClockAt(ruleTruth)
			g := &gateway{clk: clk, bootAt: ruleTruth.Add(-30 * time.Second), bootID: 7, wallErr: c.err}
			r := newClockRig(t, g, filepath.Join(t.TempDir(), "buffer.db"), c.hold, map[uint64]time.Time{}, map[uint64]sent{})
			defer r.close()
			held := func() uint64 { return r.a.clockStatus(r.q.Stats()).Held }
			for range 100 {
				r.second()
			}
			if got := held(); got != c.held100 {
				t.Errorf("after 100 s, uplink down: %d held, want %d", got, c.held100)
			}
			for range 300 {
				r.second()
			}
			if got := held(); got != c.held400 {
				t.Errorf("after 400 s, uplink down: %d held, want %d", got, c.held400)
			}
			// NTP: trusted, nothing is held, though nothing was sent yet.
			g.wallErr, g.synced = 0, true
			r.second()
			if got, n := held(), r.q.Stats().Count; got != 0 || n != 401 {
				t.Errorf("clock trusted, uplink down: %d held (want 0), %d buffered (want 401)", got, n)
			}
			// Someone steps the clock an hour: the untrusted readings not
			// yet sent are held again (400 from before the sync, 1 taken
			// as it came, 1 at the step).
			g.wallErr, g.synced = time.Hour, false
			r.second()
			if got := held(); got != c.heldStep {
				t.Errorf("after a step, uplink down: %d held, want %d", got, c.heldStep)
			}
			// NTP again, and the uplink comes up: everything leaves, and
			// a later step holds nothing of it.
			g.wallErr, g.synced = 0, true
			r.second()
			r.send()
			if n := len(r.got); n != 403 {
				t.Fatalf("the uplink sent %d readings, want all 403", n)
			}
			g.wallErr, g.synced = time.Hour, false
			r.a.clk.tr.Check()
			if got := held(); got != 0 {
				t.Errorf("all acknowledged, then a step: %d held, want 0", got)
			}
			if st := r.a.clk.tr.State(); st.Synced {
				t.Fatalf("the clock is still trusted after the step: %+v", st)
			}
		})
	}
}
