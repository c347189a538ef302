package clocksync

import (
	"sync"
	"time"
)

// Marks are the values of the SenML extension label "tq" (time quality,
// RFC 8428 §4.4: a name not ending in "_", so receivers may ignore it).
const (
	MarkNone      = ""          // the reading's own time, taken with a trusted clock
	MarkCorrected = "corrected" // derived from the boot-time offset once the clock was trusted
	MarkUnsynced  = "unsynced"  // the clock was never trusted; the reading's own time
)

// Defaults for Options' zero values.
const (
	// DefaultHold is how long readings of a boot whose clock was never
	// trusted are held before they leave marked unsynced (clock.hold).
	DefaultHold = 10 * time.Minute
	// DefaultMaxError is the largest kernel error estimate (adjtimex
	// maxerror) still counted as synchronised.
	DefaultMaxError = 1 * time.Second
	// DefaultStep is how far wall and boot time may disagree between two
	// looks before it counts as a step of the wall clock.
	DefaultStep = 1 * time.Second
)

// MaxHold is the longest clock.hold accepted; 0 means never hold.
const MaxHold = 7 * 24 * time.Hour

// Sync is what the kernel (or a time daemon) says about the wall clock.
type Sync struct {
	Synced   bool
	MaxError time.Duration // the kernel's maximum error estimate
}

// Machine is what the tracker reads from the system; replaceable in tests.
type Machine interface {
	Wall() time.Time     // the wall clock (CLOCK_REALTIME)
	Boot() time.Duration // time since boot, counting suspend (CLOCK_BOOTTIME)
	BootID() uint32      // identifies this boot (from /proc/sys/kernel/random/boot_id)
	Sync() (Sync, error) // the kernel's synchronisation state
}

// Stamp is when a reading was taken, as the gateway saw it.
type Stamp struct {
	Wall    time.Time
	Boot    time.Duration
	BootID  uint32
	Trusted bool // the wall clock was trusted when the reading was taken
}

// Decision says what to do with a buffered reading now.
type Decision struct {
	Hold bool // keep it in the buffer; ask again later
	// Never (with Hold): its time is before the build date and it comes
	// from an earlier boot whose offset is not known: nothing will ever
	// correct it, and it may not leave with the time it has (DECISIONS 3).
	Never bool
	Time  time.Time // the time to send it with
	Mark  string    // MarkNone, MarkCorrected or MarkUnsynced
}

// Options configure a Tracker.
type Options struct {
	Machine   Machine
	BuildDate time.Time     // no wall time before it is believed
	Hold      time.Duration // clock.hold; 0 = never hold (negative is invalid)
	MaxError  time.Duration // 0 → DefaultMaxError
	Step      time.Duration // 0 → DefaultStep
	// Known holds the offsets (wall − boot time, see Tracker.Offset) that
	// earlier boots learned once their clock was trusted: readings of such
	// a boot still in the buffer are corrected with it after a reboot.
	Known map[uint32]time.Duration
}

// State is the clock part of status and --diagnose.
type State struct {
	Synced         bool          `json:"synced"`
	Since          time.Time     `json:"since,omitzero"`        // wall time when it became trusted in this boot
	MaxError       time.Duration `json:"max_error_ns"`          // the kernel's estimate at the last look
	SyncError      string        `json:"sync_error,omitempty"`  // why the kernel could not be asked
	Reason         string        `json:"reason,omitempty"`      // why the clock is not trusted
	HoldUntil      time.Duration `json:"-"`                     // boot time at which unsynced readings start to leave
	LastCorrection time.Duration `json:"last_correction_ns"`    // the last step of the wall clock against boot time (e.g. NTP's first sync)
	CorrectedAt    time.Time     `json:"corrected_at,omitzero"` // wall time just after that step
}

// Tracker follows the wall clock's trustworthiness during one boot.
type Tracker struct {
	opts  Options
	boot  uint32
	start time.Duration // boot time when the tracker started

	mu      sync.Mutex
	trusted bool
	offset  time.Duration // wall − boot (as Unix nanoseconds) at the last trusted look
	last    struct {      // the previous look
		wall time.Time
		boot time.Duration
		ok   bool
	}
	state State
}

// New starts a tracker and takes its first look.
func New(opts Options) *Tracker {
	if opts.MaxError == 0 {
		opts.MaxError = DefaultMaxError
	}
	if opts.Step == 0 {
		opts.Step = DefaultStep
	}
	t := &Tracker{opts: opts, boot: opts.Machine.BootID(), start: opts.Machine.Boot()}
	t.Check()
	return t
}

// offsetOf is wall − boot: the wall time of boot zero, as Unix nanoseconds.
func offsetOf(wall time.Time, boot time.Duration) time.Duration {
	return time.Duration(wall.UnixNano()) - boot
}

// Check looks at the clock: the kernel's synchronisation state, the build
// date and whether the wall clock stepped since the previous look. Call it
// about every second; the agent's timer drives it.
func (t *Tracker) Check() {
	m := t.opts.Machine
	s, err := m.Sync()
	wall, boot := m.Wall(), m.Boot()
	t.mu.Lock()
	defer t.mu.Unlock()
	off := offsetOf(wall, boot)
	jump := time.Duration(0)
	if t.last.ok {
		jump = off - offsetOf(t.last.wall, t.last.boot)
	}
	t.last.wall, t.last.boot, t.last.ok = wall, boot, true
	stepped := abs(jump) > t.opts.Step
	if stepped {
		t.state.LastCorrection = jump
		t.state.CorrectedAt = wall
	}

	t.state.MaxError = s.MaxError
	t.state.SyncError = ""
	if err != nil {
		t.state.SyncError = err.Error()
	}
	reason := ""
	switch {
	case err != nil:
		reason = "the kernel's synchronisation state cannot be read"
	case !s.Synced:
		reason = "the kernel says the clock is not synchronised (is NTP running?)"
	case s.MaxError > t.opts.MaxError:
		reason = "the kernel's error estimate " + s.MaxError.String() + " is above " + t.opts.MaxError.String()
	case wall.Before(t.opts.BuildDate):
		reason = "the wall clock says " + wall.UTC().Format(time.RFC3339) + ", before this binary was built"
	case stepped && t.trusted:
		// A trusted clock that steps is believed again at the next look if
		// the kernel still vouches for it and it holds still. (A step that
		// comes with the first synchronisation is the correction itself.)
		reason = "the wall clock stepped; waiting for it to hold still"
	}
	if reason != "" {
		t.trusted = false
		t.state.Synced = false
		t.state.Reason = reason
		t.state.Since = time.Time{}
		return
	}
	if !t.trusted {
		t.trusted = true
		t.state.Since = wall
	}
	t.offset = off
	t.state.Synced = true
	t.state.Reason = ""
}

// Stamp stamps a reading taken now.
func (t *Tracker) Stamp() Stamp {
	m := t.opts.Machine
	wall, boot := m.Wall(), m.Boot()
	t.mu.Lock()
	defer t.mu.Unlock()
	// A step between two looks shows here first: the reading's own offset
	// must agree with the trusted one, or its time is not trusted.
	trusted := t.trusted && abs(offsetOf(wall, boot)-t.offset) <= t.opts.Step
	return Stamp{Wall: wall, Boot: boot, BootID: t.boot, Trusted: trusted}
}

// Release decides whether a buffered reading may leave now, and with which
// time and mark.
func (t *Tracker) Release(s Stamp) Decision {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case s.Trusted:
		return Decision{Time: s.Wall}
	case s.BootID == t.boot && t.trusted:
		return Decision{Time: time.Unix(0, int64(t.offset+s.Boot)), Mark: MarkCorrected}
	case s.BootID != t.boot && t.known(s.BootID):
		return Decision{Time: time.Unix(0, int64(t.opts.Known[s.BootID]+s.Boot)), Mark: MarkCorrected}
	case s.Wall.Before(t.opts.BuildDate):
		// Certainly wrong, and (in an earlier boot, or before any sync)
		// not correctable yet: it never leaves with this time.
		return Decision{Hold: true, Never: s.BootID != t.boot}
	case s.BootID != t.boot:
		// An earlier boot that never saw a trusted clock: nothing can
		// correct it any more.
		return Decision{Time: s.Wall, Mark: MarkUnsynced}
	case t.holdOver():
		return Decision{Time: s.Wall, Mark: MarkUnsynced}
	}
	return Decision{Hold: true}
}

func (t *Tracker) known(id uint32) bool {
	_, ok := t.opts.Known[id]
	return ok
}

// Offset is this boot's offset (the wall time of boot zero, as Unix
// nanoseconds) while the clock is trusted; the agent keeps it (Options.Known)
// so that a reboot can still correct this boot's held readings.
func (t *Tracker) Offset() (boot uint32, offset time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.boot, t.offset, t.trusted
}

// holdOver reports whether clock.hold has passed since start without the
// clock ever being trusted. It reads the boot time: the hold is measured on
// the monotonic clock, never on the wall clock it is waiting for.
func (t *Tracker) holdOver() bool {
	return t.opts.Hold == 0 || t.opts.Machine.Boot()-t.start >= t.opts.Hold
}

// HoldOver reports whether clock.hold is over: readings of this boot taken
// before the clock was trusted leave marked unsynced from now on, unless
// their time is before the build date.
func (t *Tracker) HoldOver() bool { return t.holdOver() }

// Trusted reports whether the wall clock is trusted now.
func (t *Tracker) Trusted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trusted
}

// State reports the clock state for status and --diagnose.
func (t *Tracker) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state
	st.HoldUntil = t.start + t.opts.Hold
	return st
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
