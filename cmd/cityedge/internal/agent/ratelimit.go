package agent

import (
	"context"
	"sync"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/jonboulle/clockwork"
)

// rateLimit is a token bucket over readings or bytes per second
// (uplink.max_rate), for metered cellular links. A batch larger than the
// bucket goes out when the bucket is full and leaves a debt, so the long-run
// rate holds whatever the batch size.
type rateLimit struct {
	perSec float64
	bytes  bool // the rate counts bytes of payload, not readings
	clock  clockwork.Clock

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newRateLimit returns the limiter for r; nil when r is unlimited.
func newRateLimit(r config.Rate, clock clockwork.Clock) *rateLimit {
	if r.Unlimited() {
		return nil
	}
	return &rateLimit{perSec: r.PerSec, bytes: r.Bytes, clock: clock}
}

// wait takes a batch's cost from the bucket and waits off any debt.
func (l *rateLimit) wait(ctx context.Context, readings, bytes int) error {
	d := l.reserve(readings, bytes)
	if d <= 0 {
		return nil
	}
	t := l.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// reserve takes the cost of a batch from the bucket and returns how long
// the caller has to wait before sending it.
func (l *rateLimit) reserve(readings, bytes int) time.Duration {
	cost := float64(readings)
	if l.bytes {
		cost = float64(bytes)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if !l.last.IsZero() {
		l.tokens = min(l.perSec, l.tokens+now.Sub(l.last).Seconds()*l.perSec)
	} else {
		l.tokens = l.perSec
	}
	l.last = now
	l.tokens -= cost
	return time.Duration(-l.tokens / l.perSec * float64(time.Second))
}
