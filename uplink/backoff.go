package uplink

import (
	"math/rand/v2"
	"time"
)

// The reconnect policy. It is a pure function of the events it is told, the
// time they happened and its random source, so a whole fleet can be simulated
// with it on a simulated clock (backoff_sim_test.go) and Run only carries out
// what it says.
//
// It tells two kinds of failure apart, because they call for opposite
// answers:
//
//   - The broker is down: the TCP connection is refused (or the network has
//     no route to it). Nothing reached a broker, so retrying costs it
//     nothing, and a broker that restarts is usually back within seconds.
//     After a session is lost the first attempt comes after a random delay
//     within BackoffMin (1 s), then attempts follow about BackoffMin apart
//     (uniform within ±25 %) for quickFor (10 s). A 3 s blip costs about a
//     second of silence after the broker is back.
//   - A live broker refuses us or cannot keep up: TCP is accepted but the TLS
//     handshake or the CONNACK is refused or times out (an overloaded broker
//     after a city-wide restart, a revoked certificate), the TCP connect
//     itself times out (a full listen backlog), or our TLS material is
//     unusable. Quick retries would make an overload worse, so the gateway
//     moves to the spread phase: exponential backoff with full jitter whose
//     first window is ReconnectSpread, counted from the loss of the session,
//     and which doubles with every further failure up to BackoffMax.
//
// ReconnectSpread (uplink.reconnect_spread, 30 s) is thus the window over
// which the fleet's reconnects are spread once quick retries would herd:
// gateways turned away by a broker soon after losing their sessions come back
// at random moments before loss + ReconnectSpread (at least half the window
// ahead), so a storm of N refused gateways arrives at about
// N / ReconnectSpread per second and every one of them is back within the
// window if the broker can take that rate.
//
// A broker that stays down longer than quickFor enters the spread phase too:
// after a long outage the whole city would otherwise return in the same
// second. Attempts are never more than BackoffMax apart.
//
// A session resets the policy when it proved good: it lasted stableAfter and
// received at least one PUBACK. A session that ends sooner (a broker that
// accepts and then drops us, two gateways sharing a client id) counts as a
// refusal, so such a loop slows down instead of spinning every second.
const (
	// quickFor is how long the quick retries last while the broker is down.
	quickFor = 10 * time.Second
	// stableAfter is how long a session must last to reset the policy.
	stableAfter = 2 * time.Second
)

// event is what happened before the next wait; it chooses the wait.
type event int

const (
	evStart     event = iota // Run begins: attempt at once
	evLost                   // a good session ended
	evLostEarly              // a session ended before it proved good
	evDown                   // no TCP connection: refused or no route
	evRefused                // handshake refused or timed out, TCP timeout, TLS material unusable
	evRequested              // Reconnect was called: attempt at once
	evStopped                // Run's context ended; never passed to next
)

// backoff is the reconnect policy's state for one client.
type backoff struct {
	quick, max, spread time.Duration
	rnd                *rand.Rand

	since     time.Time // when the current outage began
	spreading int       // spread-phase waits in this outage; 0 in the quick phase
	attempt   int       // number of the next attempt in this outage, from 1
}

func newBackoff(quick, max, spread time.Duration, rnd *rand.Rand) *backoff {
	return &backoff{quick: quick, max: max, spread: spread, rnd: rnd}
}

// next returns how long to wait after ev, which happened at now, before the
// next connection attempt.
func (b *backoff) next(now time.Time, ev event) time.Duration {
	switch ev {
	case evStart, evRequested:
		b.restart(now)
		return 0
	case evLost:
		b.restart(now)
		return min(b.uniform(0, b.quick), b.max)
	}
	b.attempt++
	if ev == evDown && b.spreading == 0 && now.Sub(b.since) < quickFor {
		return min(b.uniform(b.quick*3/4, b.quick*5/4), b.max)
	}
	return b.spreadWait(now)
}

func (b *backoff) restart(now time.Time) {
	b.since, b.spreading, b.attempt = now, 0, 1
}

// spreadWait is exponential backoff with full jitter: the k-th wait of the
// spread phase is uniform in [quick, min(max, spread·2^(k-1))): a broker that
// refused is never asked again within the quick cadence. The first
// one ends at the latest at since+spread, so that gateways refused together
// after losing their sessions together spread evenly over the window; if
// little of the window is left, half of it is used.
func (b *backoff) spreadWait(now time.Time) time.Duration {
	b.spreading++
	ceil := b.spread
	for i := 1; i < b.spreading && ceil < b.max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, b.max)
	if b.spreading == 1 {
		left := b.spread - now.Sub(b.since)
		ceil = min(ceil, max(left, b.spread/2))
	}
	return min(b.uniform(b.quick, ceil), b.max)
}

// uniform returns a duration uniform in [lo, hi), or lo when the interval is
// empty.
func (b *backoff) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(b.rnd.Int64N(int64(hi-lo)))
}
