package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/jonboulle/clockwork"
)

// gateway is a simulated gateway without a real-time clock, driven by the
// test's fake clock: the fake clock is the truth, the wall clock is the
// truth plus an error the scenario sets, boot time counts from boot.
type gateway struct {
	clk      *clockwork.FakeClock
	bootAt   time.Time
	bootID   uint32
	wallErr  time.Duration
	synced   bool
	maxError time.Duration
}

func (g *gateway) Wall() time.Time     { return g.clk.Now().Add(g.wallErr) }
func (g *gateway) Boot() time.Duration { return g.clk.Since(g.bootAt) }
func (g *gateway) BootID() uint32      { return g.bootID }
func (g *gateway) Sync() (clocksync.Sync, error) {
	return clocksync.Sync{Synced: g.synced, MaxError: g.maxError}, nil
}

var (
	ruleBuild = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ruleTruth = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
)

// sent is one reading as the broker got it.
type sent struct {
	time time.Time
	tq   string
	at   time.Time // the truth when the batch left
}

// clockRig is one boot of the agent's put and forwarder path over a real
// buffer.
type clockRig struct {
	t     *testing.T
	g     *gateway
	q     *buffer.Queue
	a     *agent
	truth map[uint64]time.Time // seq → when it was taken
	got   map[uint64]sent
}

func newClockRig(t *testing.T, g *gateway, path string, hold time.Duration, truth map[uint64]time.Time, got map[uint64]sent) *clockRig {
	log := slog.New(slog.DiscardHandler)
	q, err := buffer.Open(path, buffer.Options{MaxBytes: 64 << 20, Clock: g.clk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{}
	cfg.Clock.Hold = config.Duration(hold)
	a := &agent{cfg: cfg, log: log, clock: g.clk, q: q}
	a.clk = newClockRule(g, ruleBuild, hold, q, g.clk, log)
	a.fwd = newForwarder(q, "gw", 1000, 0, g.clk, log)
	a.fwd.clk = a.clk
	a.fwd.Rewind()
	return &clockRig{t: t, g: g, q: q, a: a, truth: truth, got: got}
}

// second takes one reading, then lets a second pass with the clock's look.
func (r *clockRig) second() {
	r.t.Helper()
	before := r.q.Stats().NextSeq
	rec, ok := r.a.record(drivers.Reading{Sensor: "air-1", Time: r.g.clk.Now(),
		Values: []drivers.Value{drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20)}}, buffer.ClassEnvironmental)
	if !ok {
		r.t.Fatal("reading not encoded")
	}
	first, err := r.q.Append(context.Background(), []buffer.Record{rec})
	if err != nil {
		r.t.Fatal(err)
	}
	r.a.committed([]buffer.Record{rec}, first) // as the hand-off tells the agent
	r.truth[before] = r.g.clk.Now()
	r.g.clk.Advance(time.Second)
	r.a.clk.tr.Check()
	r.a.clk.learn()
}

// send runs the forwarder until it has nothing it may send now: Next with
// a context already done returns a batch it can send at once, or the
// context's error.
func (r *clockRig) send() {
	r.t.Helper()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		b, err := r.a.fwd.Next(done)
		if err != nil {
			return
		}
		var recs []struct {
			BT  float64 `json:"bt"`
			T   float64 `json:"t"`
			Seq uint64  `json:"seq"`
			TQ  string  `json:"tq"`
		}
		if err := json.Unmarshal(b.Payload, &recs); err != nil {
			r.t.Fatalf("%v: %s", err, b.Payload)
		}
		bt := recs[0].BT
		for _, x := range recs {
			if _, dup := r.got[x.Seq]; dup {
				r.t.Fatalf("seq %d sent twice", x.Seq)
			}
			r.got[x.Seq] = sent{time: time.UnixMilli(int64(math.Round((bt + x.T) * 1000))).UTC(), tq: x.TQ, at: r.g.clk.Now()}
		}
		if err := r.a.fwd.Acked(b); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *clockRig) close() {
	if err := r.q.Close(); err != nil {
		r.t.Fatal(err)
	}
}

// TestClockRuleScenarios runs the scenarios through put, the buffer
// and the forwarder, the uplink up all along: what is sent, when, with which
// time and mark. Corrected and trusted times are within the step threshold
// (1 s) of the truth.
func TestClockRuleScenarios(t *testing.T) {
	epoch1970 := time.Unix(30, 0)
	type phase struct {
		at   int // second of the boot when it applies
		err  time.Duration
		sync bool
	}
	for _, c := range []struct {
		name    string
		start   phase
		changes []phase
		hold    time.Duration
		secs    int
		// how many readings leave: corrected, unsynced, plain; and how many
		// are still held at the end. The reading taken between a step and
		// the next look is corrected too.
		corrected, unsynced, plain, held int
	}{
		{name: "boot at 1970, NTP after 5 minutes", start: phase{err: epoch1970.Sub(ruleTruth)},
			changes: []phase{{at: 300, sync: true}}, hold: clocksync.DefaultHold, secs: 400, corrected: 301, plain: 99},
		{name: "stale fake-hwclock (3 weeks), NTP after 2 minutes", start: phase{err: -21 * 24 * time.Hour},
			changes: []phase{{at: 120, sync: true}}, hold: clocksync.DefaultHold, secs: 200, corrected: 121, plain: 79},
		{name: "synced, stepped forward an hour by hand, back by NTP", start: phase{sync: true},
			changes: []phase{{at: 100, err: time.Hour}, {at: 220, sync: true}}, hold: clocksync.DefaultHold, secs: 300, corrected: 121, plain: 179},
		{name: "synced, stepped backwards an hour by hand, forward by NTP", start: phase{sync: true},
			changes: []phase{{at: 50, err: -time.Hour}, {at: 80, sync: true}}, hold: clocksync.DefaultHold, secs: 120, corrected: 31, plain: 89},
		{name: "never syncs, plausible time: held for clock.hold, then sent marked", start: phase{err: 2 * time.Minute},
			hold: 5 * time.Minute, secs: 400, unsynced: 400},
		{name: "never syncs, clock.hold = 0: sent at once, marked", start: phase{err: 2 * time.Minute},
			hold: 0, secs: 60, unsynced: 60},
		{name: "never syncs, stuck at 1970: nothing leaves", start: phase{err: epoch1970.Sub(ruleTruth)},
			hold: 5 * time.Minute, secs: 600, held: 600},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := clockwork.NewFakeClockAt(ruleTruth)
			g := &gateway{clk: clk, bootAt: ruleTruth.Add(-30 * time.Second), bootID: 7, wallErr: c.start.err, synced: c.start.sync}
			truth, got := map[uint64]time.Time{}, map[uint64]sent{}
			r := newClockRig(t, g, filepath.Join(t.TempDir(), "buffer.db"), c.hold, truth, got)
			defer r.close()
			ch := c.changes
			for sec := range c.secs {
				for len(ch) > 0 && ch[0].at == sec {
					g.wallErr, g.synced = ch[0].err, ch[0].sync
					ch = ch[1:]
				}
				r.second()
				r.send()
			}
			var corrected, unsynced, plain int
			for seq, s := range got {
				tr := truth[seq]
				switch s.tq {
				case clocksync.MarkCorrected:
					corrected++
				case clocksync.MarkUnsynced:
					unsynced++
					if s.time.Before(ruleBuild) {
						t.Errorf("seq %d left with %v, before the build date", seq, s.time)
					}
					if c.hold > 0 && s.at.Before(ruleTruth.Add(c.hold)) {
						t.Errorf("seq %d left unsynced at %v, before clock.hold was over", seq, s.at)
					}
					continue // its own time, marked as such
				case "":
					plain++
				default:
					t.Fatalf("seq %d: tq %q", seq, s.tq)
				}
				if d := s.time.Sub(tr); d.Abs() > clocksync.DefaultStep {
					t.Errorf("seq %d (%s): sent %v, truth %v (off by %v)", seq, s.tq, s.time, tr, d)
				}
			}
			held := len(truth) - len(got)
			if corrected != c.corrected || unsynced != c.unsynced || plain != c.plain || held != c.held {
				t.Errorf("corrected %d unsynced %d plain %d held %d; want %d %d %d %d", corrected, unsynced, plain, held, c.corrected, c.unsynced, c.plain, c.held)
			}
			if st := r.a.clockStatus(r.q.Stats()); uint64(held) != st.Held {
				t.Errorf("status says %d held, %d are", st.Held, held)
			}
			// In order: each reading left no earlier than the one before it.
			var last time.Time
			for seq := uint64(1); seq < uint64(len(truth))+1; seq++ {
				if s, ok := got[seq]; ok {
					if s.at.Before(last) {
						t.Errorf("seq %d left at %v, before an older reading (%v)", seq, s.at, last)
					}
					last = s.at
				}
			}
		})
	}
}

// TestClockRuleReboot: readings buffered in one boot and sent after a
// reboot. A boot that never learned the true time and whose readings say
// 1970 cannot send them (they are deleted and counted); a boot that synced
// but could not send before the reboot left its offset in the buffer, and
// its readings leave corrected even before the new boot syncs.
func TestClockRuleReboot(t *testing.T) {
	epoch1970 := time.Unix(30, 0)
	for _, c := range []struct {
		name                 string
		firstSyncs           bool
		corrected, discarded int
	}{
		// Corrected: what each boot took before its sync, plus the reading
		// between the sync and the next look.
		{"first boot never synced", false, 21, 60},
		{"first boot synced, uplink down", true, 31 + 21, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "buffer.db")
			clk := clockwork.NewFakeClockAt(ruleTruth)
			truth, got := map[uint64]time.Time{}, map[uint64]sent{}
			g1 := &gateway{clk: clk, bootAt: ruleTruth.Add(-30 * time.Second), bootID: 1, wallErr: epoch1970.Sub(ruleTruth)}
			r := newClockRig(t, g1, path, clocksync.DefaultHold, truth, got)
			for sec := range 60 {
				if sec == 30 && c.firstSyncs {
					g1.wallErr, g1.synced = 0, true
				}
				r.second() // the uplink is down: nothing is sent
			}
			r.close()

			clk.Advance(time.Minute) // off, then booting again at 1970
			g2 := &gateway{clk: clk, bootAt: clk.Now().Add(-30 * time.Second), bootID: 2, wallErr: epoch1970.Sub(clk.Now())}
			r = newClockRig(t, g2, path, clocksync.DefaultHold, truth, got)
			defer r.close()
			for sec := range 40 {
				if sec == 20 {
					g2.wallErr, g2.synced = 0, true
				}
				r.second()
				r.send()
			}
			corrected := 0
			for seq, s := range got {
				if s.tq == clocksync.MarkCorrected {
					corrected++
				}
				if s.tq == clocksync.MarkUnsynced {
					t.Errorf("seq %d left unsynced", seq)
				}
				if d := s.time.Sub(truth[seq]); d.Abs() > clocksync.DefaultStep {
					t.Errorf("seq %d (%s): sent %v, truth %v", seq, s.tq, s.time, truth[seq])
				}
			}
			st := r.a.clockStatus(r.q.Stats())
			if corrected != c.corrected || int(st.Discarded) != c.discarded || len(got)+c.discarded != len(truth) {
				t.Errorf("corrected %d, discarded %d, sent %d of %d; want %d corrected, %d discarded",
					corrected, st.Discarded, len(got), len(truth), c.corrected, c.discarded)
			}
		})
	}
}
