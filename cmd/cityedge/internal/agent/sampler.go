package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

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

// sink takes a reading and returns once it is durable.
type sink func(ctx context.Context, r drivers.Reading) error

// SensorState is what status and --diagnose show of one sensor.
type SensorState struct {
	Driver    string    `json:"driver"`
	Where     string    `json:"where,omitempty"`
	Open      bool      `json:"open"`
	Readings  uint64    `json:"readings"`
	Errors    uint64    `json:"errors"`
	LastError string    `json:"last_error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
}

type sensorRunner struct {
	cfg   config.SensorConfig
	drv   catalog.Driver
	hw    Hardware
	clock clockwork.Clock
	log   *slog.Logger
	// jitter spreads a retry delay; nil: uniformly over [d/2, 3d/2).
	jitter func(time.Duration) time.Duration
	// events, when set, hears of opens, failures and halts (guidance.go).
	events sensorEvents

	readings, errs atomic.Uint64
	busySince      atomic.Int64 // UnixNano when the current open/read/append began; 0 when idle
	mu             sync.Mutex
	state          SensorState
}

func (r *sensorRunner) snapshot() SensorState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state
	s.Readings, s.Errors = r.readings.Load(), r.errs.Load()
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
	return s, t.Where(), nil
}

// sample reads s on the configured interval (and follows its changes if it
// is a Watcher) until ctx is done or it failed failLimit times in a row.
func (r *sensorRunner) sample(ctx context.Context, s drivers.Sensor, out sink) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	emit := func(vals []drivers.Value) {
		if len(vals) == 0 {
			return // nothing to report yet (a detector still learning its baseline)
		}
		rd := drivers.Reading{Sensor: r.cfg.Name, Time: r.clock.Now(), Values: vals}
		done := r.busy()
		defer done()
		if err := out(context.WithoutCancel(ctx), rd); err != nil {
			// The buffer reports and counts its own trouble; a reading that
			// could not even be encoded is a driver bug worth an error.
			r.log.Error("reading not buffered", "sensor", r.cfg.Name, "err", err)
			return
		}
		r.readings.Add(1)
		r.mu.Lock()
		r.state.LastOK = rd.Time
		r.mu.Unlock()
	}
	watchErr := make(chan error, 1)
	if w, ok := s.(drivers.Watcher); ok {
		go func() { watchErr <- w.Watch(ctx, emit) }()
	}
	failures := 0
	t := r.clock.NewTicker(r.cfg.Interval)
	defer t.Stop()
	first := true
	for {
		if !first {
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
		}
		if first {
			first = false
			if _, ok := s.(drivers.Watcher); ok {
				continue // Watch reports the state at start itself
			}
		}
		done := r.busy()
		vals, err := s.Read(ctx)
		done()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			r.recordFailure("read", err, failures)
			if failures >= failLimit {
				return err
			}
			continue
		}
		failures = 0
		emit(vals)
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
