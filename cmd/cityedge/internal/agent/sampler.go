package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/jonboulle/clockwork"
)

// Sensor retry policy: a failing read is skipped; after failLimit failures in
// a row the sensor is halted and opened again (a re-plugged chip needs its
// set-up again), with capped exponential backoff between attempts.
const (
	failLimit  = 3
	backoffMin = time.Second
	backoffMax = 5 * time.Minute
)

// sink takes a reading of the given class without waiting (the hand-off).
type sink func(r drivers.Reading, class buffer.Class)

// SensorState is what status and --diagnose show of one sensor.
type SensorState struct {
	Driver    string    `json:"driver"`
	Where     string    `json:"where,omitempty"`
	Open      bool      `json:"open"`
	Readings  uint64    `json:"readings"`
	Errors    uint64    `json:"errors"`
	LastError string    `json:"last_error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	// MissedTicks counts the sampling instants skipped because a read ran
	// past them (a read slower than the interval).
	MissedTicks uint64 `json:"missed_ticks"`
}

type sensorRunner struct {
	cfg   config.SensorConfig
	drv   catalog.Driver
	hw    Hardware
	clock clockwork.Clock
	log   *slog.Logger
	// jitter spreads a retry delay; nil: uniformly over [d/2, 3d/2).
	jitter func(time.Duration) time.Duration
	// keep holds what a catalog.StateKeeper learned (state.go); nil: nothing kept.
	keep    stateStore
	lastOcc int8 // last occupancy decision seen: 0 none, 1 occupied, 2 free (under mu)
	// phase delays the first sample after an open, so that sensors sharing
	// a bus are not all read in the same instant (see phases).
	phase time.Duration
	// events, when set, hears of opens, failures and halts (guidance.go).
	events sensorEvents

	rank                   occupancyRank
	readings, errs, missed atomic.Uint64
	busySince              atomic.Int64 // UnixNano when the current open or read began; 0 when idle
	mu                     sync.Mutex
	state                  SensorState
}

func (r *sensorRunner) snapshot() SensorState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state
	s.Readings, s.Errors, s.MissedTicks = r.readings.Load(), r.errs.Load(), r.missed.Load()
	return s
}

func (r *sensorRunner) recordFailure(stage string, err error, streak int) {
	r.errs.Add(1)
	r.mu.Lock()
	r.state.LastError = stage + ": " + err.Error()
	r.mu.Unlock()
	// The first failure of a streak is a warning; repeats are logged at
	// growing intervals (1, 2, 4, 8, ... failures) so a dead sensor does not
	// flood the journal.
	if streak&(streak-1) == 0 {
		r.log.Warn("sensor failed", "sensor", r.cfg.Name, "stage", stage, "err", err, "failures_in_a_row", streak)
	}
}

// run samples the sensor until ctx is done. It never returns early: a sensor
// that cannot be opened or read is retried with backoff.
func (r *sensorRunner) run(ctx context.Context, out sink) {
	r.state.Driver = r.cfg.Driver
	backoff := backoffMin
	streak := 0
	for ctx.Err() == nil {
		s, where, err := r.open()
		if err != nil {
			streak++
			r.recordFailure("open", err, streak)
			r.note(sensorEvents.failed)
			r.sleep(ctx, r.spread(backoff))
			backoff = min(backoff*2, backoffMax)
			continue
		}
		r.mu.Lock()
		r.state.Open, r.state.Where = true, where
		r.mu.Unlock()
		r.note(sensorEvents.opened)
		if streak > 0 {
			r.log.Info("sensor recovered", "sensor", r.cfg.Name, "after_failures", streak)
		} else {
			r.log.Info("sensor opened", "sensor", r.cfg.Name, "driver", r.cfg.Driver, "at", where)
		}
		streak = 0
		before := r.readings.Load()
		err = r.sample(ctx, s, out)
		if r.readings.Load() > before {
			backoff = backoffMin // it worked for a while: start the retry ladder again
		}
		r.save(s) // at shutdown and before a re-open
		if ctx.Err() == nil {
			r.note(sensorEvents.failed)
		}
		s.Halt()
		r.note(sensorEvents.closed)
		r.mu.Lock()
		r.state.Open = false
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		streak = failLimit
		r.log.Warn("sensor halted, reopening", "sensor", r.cfg.Name, "err", err)
		r.sleep(ctx, r.spread(backoff))
		backoff = min(backoff*2, backoffMax)
	}
}

// busy marks the start of a step that must not hang; the returned func marks
// its end. The watchdog looks at the marks.
func (r *sensorRunner) busy() func() {
	r.busySince.Store(r.clock.Now().UnixNano())
	return func() { r.busySince.Store(0) }
}

func (r *sensorRunner) open() (drivers.Sensor, string, error) {
	defer r.busy()()
	t, err := r.hw.Target(r.cfg)
	if err != nil {
		return nil, "", err
	}
	s, err := r.drv.Open(t, r.cfg.Options)
	if err != nil {
		return nil, "", err
	}
	r.restore(s)
	return s, t.Where(), nil
}

// sample reads s on the configured interval (and follows its changes if it
// is a Watcher) until ctx is done or it failed failLimit times in a row.
//
// The n-th read starts at start + n × interval, start being the open time
// plus the runner's phase: no drift, whatever the reads and the disk cost.
// A read that runs past the next instants skips them (no burst to catch up)
// and counts them in MissedTicks.
func (r *sensorRunner) sample(ctx context.Context, s drivers.Sensor, out sink) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.rank.reset() // the first state after an open ranks as occupancy
	emit := func(vals []drivers.Value) {
		if len(vals) == 0 {
			return // nothing to report yet (a detector still learning its baseline)
		}
		now := r.clock.Now()
		change, rest := r.rank.split(vals)
		if len(change) > 0 {
			out(drivers.Reading{Sensor: r.cfg.Name, Time: now, Values: change}, buffer.ClassOccupancy)
		}
		if len(rest) > 0 {
			out(drivers.Reading{Sensor: r.cfg.Name, Time: now, Values: rest}, buffer.ClassEnvironmental)
		}
		r.readings.Add(1)
		r.mu.Lock()
		r.state.LastOK = now
		r.mu.Unlock()
		if r.occupancyChanged(vals) {
			r.save(s)
		}
	}
	_, watcher := s.(drivers.Watcher)
	watchErr := make(chan error, 1)
	if w, ok := s.(drivers.Watcher); ok {
		go func() { watchErr <- w.Watch(ctx, emit) }()
	}
	failures := 0
	start := r.clock.Now().Add(r.phase)
	n := int64(0) // number of the next sampling instant
	t := r.clock.NewTimer(r.phase)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchErr:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = errors.New("watch ended")
			}
			r.recordFailure("watch", err, failLimit)
			return err
		case <-t.Chan():
		}
		// Watch reports the state at start itself.
		if n > 0 || !watcher {
			done := r.busy()
			vals, err := s.Read(ctx)
			done()
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				failures++
				r.rank.reset() // the state after a fault ranks as occupancy
				r.recordFailure("read", err, failures)
				if failures >= failLimit {
					return err
				}
			default:
				failures = 0
				emit(vals)
			}
		}
		n++
		next := start.Add(time.Duration(n) * r.cfg.Interval)
		now := r.clock.Now()
		if late := now.Sub(next); late > 0 {
			skip := int64((late-1)/r.cfg.Interval) + 1
			r.missed.Add(uint64(skip))
			n += skip
			next = start.Add(time.Duration(n) * r.cfg.Interval)
			r.log.Debug("read slower than the interval; sampling instants skipped", "sensor", r.cfg.Name,
				"skipped", skip, "missed_ticks", r.missed.Load())
		}
		t.Reset(next.Sub(now))
	}
}

// spread draws the actual wait for a retry delay d.
func (r *sensorRunner) spread(d time.Duration) time.Duration {
	if r.jitter != nil {
		return r.jitter(d)
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// sleep waits d on the runner's clock, or until ctx is done.
func (r *sensorRunner) sleep(ctx context.Context, d time.Duration) {
	t := r.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.Chan():
	}
}
