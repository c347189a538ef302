package agent

import (
	"context"
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

// TestHeldCountAfterRestart: the agent restarts within one boot, the
// clock still untrusted. clock.held counts the readings the earlier run
// buffered (once its background read is done) beside this run's, and
// leaves out those acknowledged while that read ran.
func TestHeldCountAfterRestart(t *testing.T) {
	epoch1970 := time.Unix(30, 0)
	path := filepath.Join(t.TempDir(), "buffer.db")
	clk := clockwork.NewFakeClockAt(ruleTruth)
	g := &gateway{clk: clk, bootAt: ruleTruth.Add(-30 * time.Second), bootID: 7, wallErr: epoch1970.Sub(ruleTruth)}
	r := newClockRig(t, g, path, 5*time.Minute, map[uint64]time.Time{}, map[uint64]sent{})
	for range 100 {
		r.second()
	}
	if got := r.a.clockStatus(r.q.Stats()).Held; got != 100 {
		t.Fatalf("first run: %d held, want 100", got)
	}
	r.close()

	r = newClockRig(t, g, path, 5*time.Minute, map[uint64]time.Time{}, map[uint64]sent{})
	defer r.close()
	r.a.clk.earlierRun(r.q)
	if !r.a.clk.beginEarlierCount() || r.a.clk.beginEarlierCount() {
		t.Fatal("the earlier run's count must begin once")
	}
	for range 10 {
		r.second()
	}
	if got := r.a.clockStatus(r.q.Stats()).Held; got != 10 {
		t.Errorf("restarted, before the earlier run is counted: %d held, want this run's 10", got)
	}
	// Two of the earlier run's readings are acknowledged while the count
	// runs (as the forwarder would once the clock is trusted).
	first := r.q.Stats().OldestSeq
	r.a.clk.acked([]uint64{first, first + 1})
	r.a.clk.countEarlierRun(context.Background())
	if got := r.a.clockStatus(r.q.Stats()).Held; got != 108 {
		t.Errorf("restarted within the boot: %d held, want 108 (98 of the earlier run, 10 of this one)", got)
	}
}

func TestSeqSetSubtract(t *testing.T) {
	for _, c := range []struct {
		name  string
		s, o  []seqRange
		want  []seqRange
		wantN uint64
	}{
		{"nothing to take", []seqRange{{1, 5}}, nil, []seqRange{{1, 5}}, 5},
		{"middle splits", []seqRange{{1, 10}}, []seqRange{{4, 6}}, []seqRange{{1, 3}, {7, 10}}, 7},
		{"edges trim", []seqRange{{1, 10}}, []seqRange{{1, 2}, {9, 12}}, []seqRange{{3, 8}}, 6},
		{"one taking many", []seqRange{{1, 2}, {5, 6}, {9, 10}}, []seqRange{{2, 9}}, []seqRange{{1, 1}, {10, 10}}, 2},
		{"everything", []seqRange{{3, 4}, {8, 8}}, []seqRange{{1, 100}}, nil, 0},
		{"disjoint", []seqRange{{10, 20}}, []seqRange{{1, 5}, {30, 40}}, []seqRange{{10, 20}}, 11},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s, o seqSet
			for _, r := range c.s {
				s.add(r.lo, r.hi)
			}
			for _, r := range c.o {
				o.add(r.lo, r.hi)
			}
			s.subtract(&o)
			if !slices.Equal(s.r, c.want) || s.count() != c.wantN {
				t.Errorf("got %v (count %d), want %v (count %d)", s.r, s.count(), c.want, c.wantN)
			}
		})
	}
}
