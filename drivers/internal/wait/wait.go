// Package wait is the one context-aware wait of the chip drivers: a chip's
// conversion or execution time, measured on an injected clock
// (github.com/jonboulle/clockwork), so tests run it on a fake clock and a
// cancelled context ends it at once.
package wait

import (
	"context"
	"time"

	"github.com/jonboulle/clockwork"
)

// Sleep waits d on clock, or until ctx is done; a nil clock is the real one.
// A context that is already done is refused before any waiting starts.
func Sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := Clock(clock).NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// Clock returns c, or the real clock when c is nil: the default of every
// driver's Opts.Clock.
func Clock(c clockwork.Clock) clockwork.Clock {
	if c == nil {
		return clockwork.NewRealClock()
	}
	return c
}
