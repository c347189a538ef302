// Package gpiopresence reads a digital vehicle detector wired to one GPIO
// input: the relay output of an inductive-loop detector, an infrared
// break-beam receiver, or a reed contact. The detector drives the line to its
// active level while a vehicle is present.
//
// There is no datasheet protocol here, only a line level, so the work is in
// timing: the pin is configured for edges on both transitions, the driver
// waits for edges in bounded slices (so a cancelled context is seen within a
// slice), and a level change counts only once the line has stayed at the new
// level for the debounce time. Relay contacts bounce for a few milliseconds
// and an IR beam flickers when a pedestrian crosses it; neither may be
// reported as a car.
//
// periph's Linux GPIO driver (gpioioctl) treats a WaitForEdge timeout of 0 as
// "wait forever" and a negative one as "do not wait", so every wait here is
// at least a millisecond and at most waitSlice.
package gpiopresence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/gpio"
)

// Opts configures a detector input.
type Opts struct {
	// Active is the level the detector drives while a vehicle is present:
	// gpio.Low for an open-collector or relay contact to ground (the usual
	// wiring, with a pull-up), gpio.High for a detector with a push-pull
	// output.
	Active gpio.Level
	// Pull is the pin's internal bias: gpio.PullUp for active-low wiring,
	// gpio.PullDown for active-high, gpio.Float when the detector drives the
	// line both ways or an external resistor is fitted.
	Pull gpio.Pull
	// Debounce is how long the line must keep a new level before the change
	// counts. Zero reports every change that survives one wait.
	Debounce time.Duration
	// Clock times the debounce; nil means the real clock. Tests inject a
	// fake one so that debounce decisions do not depend on the scheduler.
	Clock clockwork.Clock
}

// DefaultOpts suits a loop-detector relay contact to ground.
var DefaultOpts = Opts{Active: gpio.Low, Pull: gpio.PullUp, Debounce: 200 * time.Millisecond}

// ErrHalted is returned by Watch and Sense once Halt was called.
var ErrHalted = errors.New("gpiopresence: halted")

// waitSlice bounds one WaitForEdge call, so that Watch notices a cancelled
// context or Halt within this time even when the pin cannot be interrupted.
const waitSlice = 250 * time.Millisecond

// maxDebounce keeps a mistyped option ("200s" for "200ms") from silencing a
// bay for minutes.
const maxDebounce = time.Minute

// Dev is one detector input.
type Dev struct {
	pin      gpio.PinIn
	active   gpio.Level
	debounce time.Duration
	clock    clockwork.Clock
	halted   atomic.Bool

	mu       sync.Mutex
	occupied bool // the debounced state
	watching bool
}

var _ conn.Resource = &Dev{}

// Validate reports a debounce other than 0 or 1ms..1m (below a millisecond
// is no debounce but a number missing its unit), or an unknown pull.
func (o *Opts) Validate() error {
	if d := o.Debounce; d < 0 || (d > 0 && d < time.Millisecond) || d > maxDebounce {
		return fmt.Errorf("debounce %s is outside 0 or %s..%s", d, time.Millisecond, maxDebounce)
	}
	switch o.Pull {
	case gpio.Float, gpio.PullUp, gpio.PullDown, gpio.PullNoChange:
	default:
		return fmt.Errorf("unknown pull %v", o.Pull)
	}
	return nil
}

// New configures p as an input with opts.Pull and edge detection on both
// transitions, and takes the line's current level as the initial state.
func New(p gpio.PinIn, opts *Opts) (*Dev, error) {
	if p == nil {
		return nil, errors.New("gpiopresence: no pin")
	}
	if opts == nil {
		opts = &DefaultOpts
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("gpiopresence: %s: %w", p.Name(), err)
	}
	// Configure before the first Read: periph's Linux driver would otherwise
	// silently configure the line with a pull-up and no edge detection.
	if err := p.In(opts.Pull, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("gpiopresence: %s: configure input with %s and both edges: %w", p.Name(), opts.Pull, err)
	}
	clock := opts.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	d := &Dev{pin: p, active: opts.Active, debounce: opts.Debounce, clock: clock}
	d.occupied = p.Read() == d.active
	return d, nil
}

// Sense reports whether a vehicle is present. While Watch runs it returns the
// debounced state Watch keeps; otherwise it reads the line once (a single
// read cannot be debounced).
func (d *Dev) Sense() (bool, error) {
	if d.halted.Load() {
		return false, ErrHalted
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.watching {
		d.occupied = d.pin.Read() == d.active
	}
	return d.occupied, nil
}

// Watch calls emit with the current state once, then after every debounced
// change, until ctx is done (it returns ctx's error) or Halt is called (it
// returns ErrHalted). emit runs on Watch's goroutine; it should not block
// for long, since edges are not watched meanwhile. Only one Watch may run
// at a time.
func (d *Dev) Watch(ctx context.Context, emit func(occupied bool)) error {
	d.mu.Lock()
	if d.watching {
		d.mu.Unlock()
		return fmt.Errorf("gpiopresence: %s: already watched", d.pin.Name())
	}
	d.watching = true
	d.occupied = d.pin.Read() == d.active
	state := d.occupied
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.watching = false
		d.mu.Unlock()
	}()

	emit(state)
	var (
		pending  bool      // an edge was seen and has not been judged yet
		lastEdge time.Time // when the line last moved, by d.clock
	)
	for {
		if d.halted.Load() {
			return ErrHalted
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := waitSlice
		if pending {
			quiet := d.clock.Since(lastEdge)
			if quiet >= d.debounce {
				// The line has been still for the debounce time: its level
				// now is the new state (or the old one, after a bounce that
				// came back).
				pending = false
				if occ := d.pin.Read() == d.active; d.set(occ) {
					emit(occ)
				}
				continue
			}
			wait = min(wait, d.debounce-quiet)
		}
		if d.pin.WaitForEdge(max(wait, time.Millisecond)) {
			pending, lastEdge = true, d.clock.Now()
			continue
		}
		if !pending && (d.pin.Read() == d.active) != d.current() {
			// The level differs from the state with no edge seen: an edge
			// was lost (the kernel's event queue overflowed, or it came
			// while the line was being configured). Judge it like an edge.
			pending, lastEdge = true, d.clock.Now()
		}
	}
}

// set records the debounced state and reports whether it changed.
func (d *Dev) set(occ bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := d.occupied != occ
	d.occupied = occ
	return changed
}

func (d *Dev) current() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.occupied
}

// Halt stops a running Watch (interrupting its wait where the pin allows,
// otherwise within one wait slice) and makes further calls fail.
func (d *Dev) Halt() error {
	d.halted.Store(true)
	if err := d.pin.Halt(); err != nil {
		return fmt.Errorf("gpiopresence: %s: halt: %w", d.pin.Name(), err)
	}
	return nil
}

// String implements conn.Resource.
func (d *Dev) String() string {
	return fmt.Sprintf("gpio-presence(%s, active %s)", d.pin.Name(), d.active)
}
