package uplink

import (
	"math/rand/v2"
	"time"
)

// backoff is the reconnect policy. It is a pure function of its parameters
// and the random source, so the spread of a whole fleet can be computed in a
// test without sleeping.
//
// Two situations differ:
//   - After an established session ends (broker restart, network loss), the
//     first attempt waits a uniform delay in [0, spread). Every gateway of a
//     city loses its session at the same instant when the broker restarts; a
//     short or exponential first delay would bring them all back within a
//     second or two. A uniform spread turns that spike into a flat rate of
//     fleet/spread connections per second.
//   - After the n-th failed attempt in a row, capped exponential backoff with
//     full jitter: a delay uniform in [min, min(max, min·2^n)). The ceiling
//     grows while the broker stays away, the floor keeps a failing client
//     from spinning, and the jitter keeps clients that failed together from
//     retrying together.
type backoff struct {
	min, max, spread time.Duration
	rnd              *rand.Rand
	fails            int
}

func newBackoff(min, max, spread time.Duration, rnd *rand.Rand) *backoff {
	return &backoff{min: min, max: max, spread: spread, rnd: rnd}
}

// afterLoss returns the delay before the first attempt after an established
// session ended.
func (b *backoff) afterLoss() time.Duration {
	b.fails = 0
	return b.uniform(0, b.spread)
}

// afterFailure returns the delay before the next attempt after a failed one.
func (b *backoff) afterFailure() time.Duration {
	b.fails++
	ceil := b.max
	if b.fails < 40 { // beyond, min·2^n overflows; the cap applies anyway
		ceil = min(b.max, b.min<<b.fails)
	}
	return b.uniform(b.min, ceil)
}

// reset forgets past failures (after a successful connection).
func (b *backoff) reset() { b.fails = 0 }

// uniform returns a duration uniform in [lo, hi), or lo when the interval is
// empty.
func (b *backoff) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(b.rnd.Int64N(int64(hi-lo)))
}
