package clocksync

import (
	"errors"
	"testing"
	"time"
)

// machine is a simulated gateway: truth advances with tick; the wall clock is
// truth plus an error the scenario sets (a 1970 boot, a stale fake-hwclock, a
// manual step); boot time counts from boot.
type machine struct {
	truth    time.Time
	bootAt   time.Time // truth at boot
	wallErr  time.Duration
	synced   bool
	maxError time.Duration
	syncErr  error
	bootID   uint32
}

func (m *machine) Wall() time.Time     { return m.truth.Add(m.wallErr) }
func (m *machine) Boot() time.Duration { return m.truth.Sub(m.bootAt) }
func (m *machine) BootID() uint32      { return m.bootID }
func (m *machine) Sync() (Sync, error) {
	return Sync{Synced: m.synced, MaxError: m.maxError}, m.syncErr
}

var (
	buildDate = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	trueStart = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	epoch1970 = time.Unix(30, 0) // a gateway without a real-time clock, 30 s after boot
)

// reading is one sampled reading with the truth beside it.
type reading struct {
	stamp Stamp
	truth time.Time
}

// run drives a scenario second by second: step(sec) may change the machine
// before each second's look; a reading is taken every second.
func run(t *testing.T, m *machine, hold time.Duration, seconds int, step func(sec int)) (*Tracker, []reading) {
	t.Helper()
	tr := New(Options{Machine: m, BuildDate: buildDate, Hold: hold})
	var rs []reading
	for sec := 0; sec < seconds; sec++ {
		if step != nil {
			step(sec)
		}
		tr.Check()
		rs = append(rs, reading{tr.Stamp(), m.truth})
		m.truth = m.truth.Add(time.Second)
	}
	return tr, rs
}

// bound is the error a delivered time may have: the step threshold (a
// slewing clock within it is believed as it is).
const bound = DefaultStep

func TestScenarios(t *testing.T) {
	cases := []struct {
		name string
		m    machine
		hold time.Duration
		secs int
		step func(m *machine) func(sec int)
		// want: how many readings leave, held, marked each way
		wantHeld, wantCorrected, wantUnsynced, wantPlain int
	}{
		{
			name: "boot at 1970, NTP after 5 minutes",
			m:    machine{wallErr: epoch1970.Sub(trueStart.Add(-30 * time.Second))},
			hold: DefaultHold, secs: 600,
			step: func(m *machine) func(int) {
				return func(sec int) {
					if sec == 300 {
						m.wallErr, m.synced, m.maxError = 0, true, 50*time.Millisecond
					}
				}
			},
			wantCorrected: 300, wantPlain: 300,
		},
		{
			name: "boot at a stale fake-hwclock time (3 weeks), NTP after 2 minutes",
			m:    machine{wallErr: -21 * 24 * time.Hour},
			hold: DefaultHold, secs: 300,
			step: func(m *machine) func(int) {
				return func(sec int) {
					if sec == 120 {
						m.wallErr, m.synced = 0, true
					}
				}
			},
			wantCorrected: 120, wantPlain: 180,
		},
		{
			name: "synced, stepped forward an hour by hand, NTP steps it back after 2 minutes",
			m:    machine{synced: true},
			hold: DefaultHold, secs: 400,
			step: func(m *machine) func(int) {
				return func(sec int) {
					switch sec {
					case 100: // date -s: the kernel marks the clock unsynchronised
						m.wallErr, m.synced = time.Hour, false
					case 220:
						m.wallErr, m.synced = 0, true
					}
				}
			},
			wantCorrected: 120, wantPlain: 280,
		},
		{
			name: "synced, stepped backwards by NTP itself while the kernel stays synced",
			m:    machine{synced: true, wallErr: 5 * time.Second},
			hold: DefaultHold, secs: 60,
			step: func(m *machine) func(int) {
				return func(sec int) {
					if sec == 30 {
						m.wallErr = 0
					}
				}
			},
			// The first 30 readings were taken with a trusted clock 5 s
			// off (within what the kernel claimed): they keep their time.
			// The step's own second is not trusted, then the next look is.
			wantCorrected: 1, wantPlain: 59,
		},
		{
			name: "never syncs, wall time plausible: held for clock.hold, then sent marked",
			m:    machine{wallErr: 2 * time.Minute},
			hold: 5 * time.Minute, secs: 600,
			wantUnsynced: 600,
		},
		{
			name: "never syncs, clock.hold = 0: sent at once, marked",
			m:    machine{wallErr: 2 * time.Minute},
			hold: 0, secs: 60,
			wantUnsynced: 60,
		},
		{
			name: "never syncs, stuck in 1970: nothing leaves with a time before the build date",
			m:    machine{wallErr: epoch1970.Sub(trueStart)},
			hold: 5 * time.Minute, secs: 600,
			wantHeld: 600,
		},
		{
			name: "kernel cannot be asked: not trusted",
			m:    machine{synced: true, syncErr: errors.New("EPERM")},
			hold: 10 * time.Minute, secs: 60,
			wantHeld: 60,
		},
		{
			name: "kernel error estimate too large: not trusted",
			m:    machine{synced: true, maxError: 16 * time.Second},
			hold: 10 * time.Minute, secs: 60,
			wantHeld: 60,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.m
			m.truth, m.bootAt, m.bootID = trueStart, trueStart.Add(-30*time.Second), 7
			var step func(int)
			if c.step != nil {
				step = c.step(&m)
			}
			tr, rs := run(t, &m, c.hold, c.secs, step)
			var held, corrected, unsynced, plain int
			for i, r := range rs {
				d := tr.Release(r.stamp)
				switch {
				case d.Hold:
					held++
					continue
				case d.Mark == MarkCorrected:
					corrected++
				case d.Mark == MarkUnsynced:
					unsynced++
					if d.Time.Before(buildDate) {
						t.Fatalf("reading %d left with %v, before the build date", i, d.Time)
					}
					continue // its own time, known to be unverified
				case d.Mark == MarkNone:
					plain++
				}
				// Trusted or corrected: within the bound of the truth, except
				// the "NTP stepped while synced" case, where the kernel vouched
				// for a clock 5 s off.
				if err := d.Time.Sub(r.truth); abs(err) > bound && c.m.wallErr == 0 {
					t.Errorf("reading %d: sent %v, truth %v (error %v)", i, d.Time, r.truth, err)
				}
			}
			if held != c.wantHeld || corrected != c.wantCorrected || unsynced != c.wantUnsynced || plain != c.wantPlain {
				t.Errorf("held %d corrected %d unsynced %d plain %d; want %d %d %d %d (state %+v)",
					held, corrected, unsynced, plain, c.wantHeld, c.wantCorrected, c.wantUnsynced, c.wantPlain, tr.State())
			}
		})
	}
}

// TestRebootBeforeSync: readings of an earlier boot that never saw a trusted
// clock leave marked unsynced with their own time (nothing can correct them),
// unless that time is before the build date.
func TestRebootBeforeSync(t *testing.T) {
	m := &machine{truth: trueStart, bootAt: trueStart, bootID: 1, wallErr: -time.Hour}
	_, first := run(t, m, DefaultHold, 30, nil)
	m1970 := &machine{truth: trueStart, bootAt: trueStart, bootID: 1, wallErr: epoch1970.Sub(trueStart)}
	_, early := run(t, m1970, DefaultHold, 5, nil)

	// Reboot; this boot syncs at once.
	m2 := &machine{truth: trueStart.Add(time.Hour), bootAt: trueStart.Add(time.Hour), bootID: 2, synced: true}
	tr := New(Options{Machine: m2, BuildDate: buildDate, Hold: DefaultHold})
	for _, r := range first {
		d := tr.Release(r.stamp)
		if d.Hold || d.Mark != MarkUnsynced || !d.Time.Equal(r.stamp.Wall) {
			t.Fatalf("earlier boot's reading: %+v, want its own time marked unsynced", d)
		}
	}
	for _, r := range early {
		if d := tr.Release(r.stamp); !d.Hold || !d.Never {
			t.Fatalf("earlier boot's 1970 reading: %+v, want held for ever", d)
		}
	}
}

// TestRebootAfterSync: a boot that synced but could not send its corrected
// readings before a reboot left its offset behind (Options.Known); the next
// boot corrects them with it, even when it is not synced itself.
func TestRebootAfterSync(t *testing.T) {
	m := &machine{truth: trueStart, bootAt: trueStart.Add(-30 * time.Second), bootID: 1, wallErr: epoch1970.Sub(trueStart)}
	tr, rs := run(t, m, DefaultHold, 120, func(sec int) {
		if sec == 60 {
			m.wallErr, m.synced = 0, true
		}
	})
	id, off, ok := tr.Offset()
	if !ok || id != 1 {
		t.Fatalf("Offset after sync: %d %v %v", id, off, ok)
	}
	m2 := &machine{truth: trueStart.Add(time.Hour), bootAt: trueStart.Add(time.Hour), bootID: 2, wallErr: epoch1970.Sub(trueStart)}
	tr2 := New(Options{Machine: m2, BuildDate: buildDate, Hold: DefaultHold, Known: map[uint32]time.Duration{id: off}})
	for i, r := range rs {
		d := tr2.Release(r.stamp)
		if d.Hold || abs(d.Time.Sub(r.truth)) > bound || (d.Mark == MarkNone) != r.stamp.Trusted {
			t.Fatalf("reading %d after the reboot: %+v, truth %v", i, d, r.truth)
		}
	}
}

// TestStateReportsCorrection: status shows synced, since when, and the last
// correction applied.
func TestStateReportsCorrection(t *testing.T) {
	m := &machine{truth: trueStart, bootAt: trueStart.Add(-time.Minute), bootID: 3, wallErr: -21 * 24 * time.Hour}
	tr := New(Options{Machine: m, BuildDate: buildDate, Hold: DefaultHold})
	st := tr.State()
	if st.Synced || st.Reason == "" {
		t.Fatalf("state before sync %+v", st)
	}
	// The first trusted look after an untrusted start counts the jump from
	// the start's offset.
	m.truth = m.truth.Add(time.Minute)
	m.wallErr, m.synced = 0, true
	tr.Check()
	st = tr.State()
	if !st.Synced || !st.Since.Equal(m.truth) || st.Reason != "" {
		t.Fatalf("state after sync %+v", st)
	}
	if st.HoldUntil != time.Minute+DefaultHold {
		t.Errorf("HoldUntil %v", st.HoldUntil)
	}
	if st.LastCorrection != 21*24*time.Hour || !st.CorrectedAt.Equal(m.truth) {
		t.Errorf("last correction %v at %v, want 504h at %v", st.LastCorrection, st.CorrectedAt, m.truth)
	}
}

func TestStampTrustNeedsAgreeingOffset(t *testing.T) {
	m := &machine{truth: trueStart, bootAt: trueStart, bootID: 1, synced: true}
	tr := New(Options{Machine: m, BuildDate: buildDate})
	if s := tr.Stamp(); !s.Trusted {
		t.Fatal("stamp of a synced clock not trusted")
	}
	m.wallErr = 10 * time.Second // a step not yet seen by Check
	if s := tr.Stamp(); s.Trusted {
		t.Fatal("stamp taken after an unseen step trusted")
	}
}
