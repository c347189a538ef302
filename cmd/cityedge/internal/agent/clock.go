package agent

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/jonboulle/clockwork"
)

// The clock rule (README "Time on gateways without a real-time clock"):
// the agent runs one clocksync.Tracker. Every reading is stamped where it
// is buffered (put): its wall time becomes the reading's time, and a reading
// taken while the wall clock is not trusted also keeps its boot stamp (boot
// id and time since boot) in the buffer. Before the forwarder sends a
// stamped reading it asks the tracker (release): the reading leaves with its
// corrected time ("tq":"corrected"), with its own time ("tq":"unsynced",
// clock.hold over or an earlier boot that never synced), or it is held.
// Held readings are always the newest of this boot, so the forwarder stops
// at the first held one and sends nothing behind it: order is kept, and
// nothing waits that could leave. A reading of an earlier boot whose time is
// before the build date and whose boot never learned the true time can never
// leave with a true time: it is deleted and counted (clock.discarded).

// clockCheckEvery is how often the tracker looks at the clock, on the
// injected clock; held readings are looked at again as often.
const clockCheckEvery = time.Second

// clockStateKey keeps, in the buffer, the offsets the last boots learned
// once their clock was trusted (encodeKnown), for keepBoots boots.
const (
	clockStateKey = "clock/offsets"
	keepBoots     = 8
)

// ClockStatus is the clock part of the status message and --diagnose.
type ClockStatus struct {
	clocksync.State
	Held      uint64 `json:"held"`                // readings held for a trusted clock
	Discarded uint64 `json:"discarded,omitempty"` // readings deleted: a time no clock can correct
}

type stateKeeper interface {
	SetState(key string, val []byte) error
	State(key string) []byte
}

type clockRule struct {
	tr    *clocksync.Tracker
	keep  stateKeeper
	clock clockwork.Clock
	log   *slog.Logger

	boot      uint32    // this boot's id
	build     time.Time // no wall time before it is believed
	onTrusted func()    // called when the clock becomes trusted (nil: nothing)

	// earlier, when set, reads the readings an earlier run of the agent
	// buffered (seq below earlierBelow), for the held count (heldcount.go).
	earlier      func(after uint64, max, maxBytes int) ([]buffer.Entry, error)
	earlierBelow uint64

	mu          sync.Mutex
	known       map[uint32]time.Duration
	discarded   uint64
	early, late seqSet // held-count bookkeeping (heldcount.go)
	lastReport  uint64
	scanning    bool   // the earlier run's readings are being counted
	scanned     bool   // their count has begun (it runs once)
	ackedScan   seqSet // acked while scanning, below earlierBelow
}

func newClockRule(m clocksync.Machine, build time.Time, hold time.Duration, keep stateKeeper, clock clockwork.Clock, log *slog.Logger) *clockRule {
	if build.IsZero() {
		build = clocksync.Floor
	}
	known := decodeKnown(keep.State(clockStateKey))
	c := &clockRule{keep: keep, clock: clock, log: log, known: known, boot: m.BootID(), build: build}
	c.tr = clocksync.New(clocksync.Options{Machine: m, BuildDate: build, Hold: hold, Known: known})
	c.learn()
	if st := c.tr.State(); !st.Synced {
		log.Warn("wall clock not trusted yet; readings are held until it is", "reason", st.Reason, "hold", hold)
	}
	return c
}

// run looks at the clock every clockCheckEvery until ctx is done.
func (c *clockRule) run(ctx context.Context) {
	t := c.clock.NewTicker(clockCheckEvery)
	defer t.Stop()
	for {
		// The earlier run's held readings are counted the first time the
		// clock is not trusted: with a trusted clock nothing is held, and
		// a synced gateway never reads its backlog for this.
		if !c.tr.Trusted() && c.beginEarlierCount() {
			go c.countEarlierRun(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		was := c.tr.State()
		c.tr.Check()
		now := c.tr.State()
		switch {
		case now.Synced && !was.Synced:
			c.log.Info("wall clock trusted; held readings leave with corrected times", "max_error", now.MaxError, "correction", now.LastCorrection)
			if c.onTrusted != nil {
				c.onTrusted()
			}
		case !now.Synced && was.Synced:
			c.log.Warn("wall clock no longer trusted; new readings are held", "reason", now.Reason)
		}
		c.learn()
	}
}

// learn keeps this boot's offset in the buffer when it is new or moved, so
// that a reboot can still correct this boot's held readings.
func (c *clockRule) learn() {
	id, off, ok := c.tr.Offset()
	if !ok {
		return
	}
	c.mu.Lock()
	old, had := c.known[id]
	if had && (old-off).Abs() <= clocksync.DefaultStep {
		c.mu.Unlock()
		return
	}
	next := map[uint32]time.Duration{id: off}
	// Keep the offsets of the last boots besides this one.
	for k, v := range c.known {
		if len(next) < keepBoots && k != id {
			next[k] = v
		}
	}
	c.known = next
	val := encodeKnown(next, id)
	c.mu.Unlock()
	if err := c.keep.SetState(clockStateKey, val); err != nil {
		c.log.Warn("cannot keep the clock offset", "err", err)
	}
}

// encodeKnown writes the offsets, this boot's first: 4 bytes boot id and 8
// bytes offset (Unix nanoseconds of boot zero), little-endian, each.
func encodeKnown(m map[uint32]time.Duration, first uint32) []byte {
	out := make([]byte, 0, 12*len(m))
	out = binary.LittleEndian.AppendUint32(out, first)
	out = binary.LittleEndian.AppendUint64(out, uint64(m[first]))
	for k, v := range m {
		if k != first {
			out = binary.LittleEndian.AppendUint32(out, k)
			out = binary.LittleEndian.AppendUint64(out, uint64(v))
		}
	}
	return out
}

func decodeKnown(b []byte) map[uint32]time.Duration {
	m := map[uint32]time.Duration{}
	for ; len(b) >= 12 && len(m) < keepBoots; b = b[12:] {
		m[binary.LittleEndian.Uint32(b)] = time.Duration(binary.LittleEndian.Uint64(b[4:]))
	}
	return m
}

// stamp stamps a reading about to be buffered: its time becomes the wall
// time of the stamp, and the boot stamp is returned when that time is not
// trusted (nil when it is).
func (c *clockRule) stamp(r *drivers.Reading) *buffer.BootStamp {
	s := c.tr.Stamp()
	r.Time = s.Wall
	if s.Trusted {
		return nil
	}
	return &buffer.BootStamp{ID: s.BootID, Since: s.Boot}
}

// release decides about a buffered reading. Readings without a boot stamp
// (taken with a trusted clock, or buffered by a version without the clock
// rule) leave as they are.
func (c *clockRule) release(e *buffer.Entry) clocksync.Decision {
	if e.Boot == nil {
		return clocksync.Decision{}
	}
	wall, ok := senml.StoredTime(e.Data)
	if !ok {
		return clocksync.Decision{} // damaged: Pack finds it and reports it
	}
	return c.tr.Release(clocksync.Stamp{Wall: wall, Boot: e.Boot.Since, BootID: e.Boot.ID})
}

func (c *clockRule) discard(n int) {
	c.mu.Lock()
	c.discarded += uint64(n)
	c.mu.Unlock()
}

func (c *clockRule) status(st buffer.Stats) *ClockStatus {
	held := c.held(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	return &ClockStatus{State: c.tr.State(), Held: held, Discarded: c.discarded}
}

// stampReading stamps r where the agent buffers it (nil: no clock rule, or
// a trusted time).
func (a *agent) stampReading(r *drivers.Reading) *buffer.BootStamp {
	if a.clk == nil {
		return nil
	}
	return a.clk.stamp(r)
}

// clockStatus is the clock part of the status: the tracker's state and the
// readings held for a trusted clock (heldcount.go).
func (a *agent) clockStatus(st buffer.Stats) *ClockStatus {
	if a.clk == nil {
		return nil
	}
	return a.clk.status(st)
}

// openClock starts the clock rule on the machine Deps names (nil: this
// gateway's kernel).
func (a *agent) openClock(d Deps) error {
	m := d.ClockSource
	if m == nil {
		sys, err := systemClock()
		if err != nil {
			return err
		}
		m = sys
	}
	a.clk = newClockRule(m, d.BuildDate, a.cfg.Clock.Hold.D(), a.q, a.clock, a.log)
	a.clk.earlierRun(a.q) // before sampling starts
	// A clock that was years off made the TLS material look expired or not
	// yet valid, and the uplink backs off while it is: once the clock is
	// trusted, try at once rather than at the end of the backoff.
	a.clk.onTrusted = func() {
		if a.up != nil && !a.up.State().Connected {
			a.up.Reconnect()
		}
	}
	return nil
}
