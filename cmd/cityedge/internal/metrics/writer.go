package metrics

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
)

// Writer rewrites the text file every Interval with a fresh snapshot.
type Writer struct {
	Path     string          // metrics.textfile
	Interval time.Duration   // 0: DefaultInterval
	Snapshot func() Snapshot // called once per write; must not block
	Clock    clockwork.Clock // nil: the real clock
	Logger   *slog.Logger    // nil: discard
}

// Run writes the file at once and then every Interval until ctx ends,
// then once more, so the file holds the last state. A failed write is
// logged at WARN (once until a write succeeds again) and retried at the next
// tick: metrics never stop the agent.
func (w *Writer) Run(ctx context.Context) error {
	if w.Path == "" || w.Snapshot == nil {
		return errors.New("metrics: writer needs a path and a snapshot function")
	}
	clock, log, every := w.Clock, w.Logger, w.Interval
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = DefaultInterval
	}
	failing := false
	write := func() {
		err := WriteFile(w.Path, w.Snapshot())
		switch {
		case err != nil && !failing:
			log.Warn("metrics textfile not written", "path", w.Path, "err", err)
		case err == nil && failing:
			log.Info("metrics textfile written again", "path", w.Path)
		}
		failing = err != nil
	}
	write()
	t := clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			write()
			return nil
		case <-t.Chan():
			write()
		}
	}
}
