package remote

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Default rate of answers to rejected commands: a burst of 5, then one
// every 12 s (5 a minute).
const (
	DefaultAnswerBurst = 5
	DefaultAnswerEvery = 12 * time.Second
)

// Limiter is a token bucket on an injected clock: Burst tokens, one more
// every Every, up to Burst.
type Limiter struct {
	clock clockwork.Clock
	every time.Duration
	burst int

	mu     sync.Mutex
	tokens int
	last   time.Time // when the bucket last gained a token (or was full)
}

// NewLimiter returns a full bucket. every <= 0 or burst <= 0 take the
// defaults; a nil clock is the real one.
func NewLimiter(clock clockwork.Clock, every time.Duration, burst int) *Limiter {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if every <= 0 {
		every = DefaultAnswerEvery
	}
	if burst <= 0 {
		burst = DefaultAnswerBurst
	}
	return &Limiter{clock: clock, every: every, burst: burst, tokens: burst, last: clock.Now()}
}

// Allow takes a token if there is one.
func (l *Limiter) Allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.tokens >= l.burst {
		l.last = now
	} else if elapsed := now.Sub(l.last); elapsed >= l.every {
		n := int(elapsed / l.every)
		l.tokens = min(l.burst, l.tokens+n)
		l.last = l.last.Add(time.Duration(n) * l.every)
	} else if elapsed < 0 { // the clock stepped back: restart the interval
		l.last = now
	}
	if l.tokens == 0 {
		return false
	}
	l.tokens--
	return true
}
