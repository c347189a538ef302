package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// policyRun feeds a policy a sequence of events on a simulated clock, each
// happening when the previous wait ended, and returns the waits.
type policyRun struct {
	b   *backoff
	now time.Time
}

func newPolicyRun(seed uint64, spread time.Duration) *policyRun {
	return &policyRun{
		b:   newBackoff(DefaultBackoffMin, DefaultBackoffMax, spread, rand.New(rand.NewPCG(seed, 7))),
		now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func (p *policyRun) step(ev event) time.Duration {
	d := p.b.next(p.now, ev)
	p.now = p.now.Add(d)
	return d
}

// TestPolicyBlip: after a session is lost the first attempt comes within a
// second; while the broker refuses TCP, attempts follow about a second apart
// (0.75 to 1.25 s), so a broker back after 3 s is reached within 1.25 s.
func TestPolicyBlip(t *testing.T) {
	const seeds = 500
	var sum time.Duration
	var n int
	for seed := range uint64(seeds) {
		p := newPolicyRun(seed, DefaultReconnectSpread)
		lostAt := p.now
		if d := p.step(evLost); d < 0 || d >= time.Second {
			t.Fatalf("seed %d: first attempt after %v, want within 1 s", seed, d)
		}
		if p.b.attempt != 1 {
			t.Fatalf("seed %d: first attempt numbered %d", seed, p.b.attempt)
		}
		backAt := lostAt.Add(3 * time.Second)
		reached := false
		for p.now.Sub(lostAt) < quickFor-1250*time.Millisecond {
			d := p.step(evDown)
			if d < 750*time.Millisecond || d >= 1250*time.Millisecond {
				t.Fatalf("seed %d, %v into the outage: wait %v, want 0.75 s to 1.25 s", seed, p.now.Sub(lostAt)-d, d)
			}
			sum += d
			n++
			if !reached && !p.now.Before(backAt) {
				reached = true
				if late := p.now.Sub(backAt); late >= 1250*time.Millisecond {
					t.Errorf("seed %d: broker back for %v before the next attempt", seed, late)
				}
			}
		}
	}
	if mean := sum / time.Duration(n); mean < 950*time.Millisecond || mean > 1050*time.Millisecond {
		t.Errorf("mean wait while the broker is down %v, want about 1 s", mean)
	}
}

// TestPolicyLongOutage: a broker down longer than quickFor moves the gateway
// to the spread phase (so a city does not return in the same second), and
// attempts are never more than BackoffMax apart.
func TestPolicyLongOutage(t *testing.T) {
	for seed := range uint64(200) {
		p := newPolicyRun(seed, DefaultReconnectSpread)
		lostAt := p.now
		p.step(evLost)
		quick := true
		for p.now.Sub(lostAt) < 24*time.Hour {
			elapsed := p.now.Sub(lostAt)
			d := p.step(evDown)
			if d > DefaultBackoffMax {
				t.Fatalf("seed %d: wait %v exceeds BackoffMax %v", seed, d, DefaultBackoffMax)
			}
			inQuick := elapsed < quickFor && d >= 750*time.Millisecond && d < 1250*time.Millisecond
			switch {
			case elapsed < quickFor && !inQuick:
				t.Fatalf("seed %d: wait %v at %v, before quickFor ended", seed, d, elapsed)
			case elapsed >= quickFor && quick:
				quick = false
				if end := elapsed + d; end > DefaultReconnectSpread {
					t.Errorf("seed %d: first spread attempt at %v, want before %v", seed, end, DefaultReconnectSpread)
				}
			}
		}
		if quick {
			t.Fatalf("seed %d: still quick retries after a day", seed)
		}
	}
}

// TestPolicyRefusingBroker: a broker that accepts TCP and refuses the
// handshake gets waits drawn from windows that grow from ReconnectSpread to
// BackoffMax: inside [1 s, ceiling), using the whole window.
func TestPolicyRefusingBroker(t *testing.T) {
	const seeds, attempts = 500, 8
	spread := 10 * time.Second // < BackoffMax/8, so several doublings show
	var top, sum [attempts + 1]time.Duration
	for seed := range uint64(seeds) {
		p := newPolicyRun(seed, spread)
		p.step(evStart)
		for k := 1; k <= attempts; k++ {
			d := p.step(evRefused)
			ceil := min(DefaultBackoffMax, spread<<(k-1))
			if d < DefaultBackoffMin || d >= ceil {
				t.Fatalf("seed %d, refusal %d: wait %v outside [%v, %v)", seed, k, d, DefaultBackoffMin, ceil)
			}
			top[k] = max(top[k], d)
			sum[k] += d
		}
	}
	for k := 1; k <= attempts; k++ {
		ceil := min(DefaultBackoffMax, spread<<(k-1))
		mean, want := sum[k]/seeds, (DefaultBackoffMin+ceil)/2
		if top[k] < ceil*95/100 || mean < want*85/100 || mean > want*115/100 {
			t.Errorf("refusal %d: max %v, mean %v; want max near %v and mean near %v", k, top[k], mean, ceil, want)
		}
	}
	if top[attempts] >= DefaultBackoffMax {
		t.Errorf("wait %v reaches BackoffMax", top[attempts])
	}
}

// TestPolicyStormWindow: gateways refused right after losing their sessions
// come back at random moments spread over the rest of ReconnectSpread,
// counted from the loss: all within it, and evenly.
func TestPolicyStormWindow(t *testing.T) {
	const n = 20000
	buckets := make([]int, 30)
	for seed := range uint64(n) {
		p := newPolicyRun(seed, DefaultReconnectSpread)
		lostAt := p.now
		p.step(evLost)
		p.step(evRefused)
		at := p.now.Sub(lostAt)
		if at >= DefaultReconnectSpread {
			t.Fatalf("seed %d: attempt after a refusal at %v, want within %v of the loss", seed, at, DefaultReconnectSpread)
		}
		buckets[int(at/time.Second)]++
	}
	for s := 2; s < 30; s++ { // uniform over about 29 s: ~690 each
		if buckets[s] < 550 || buckets[s] > 850 {
			t.Errorf("second %d holds %d of %d retries; want an even spread (%v)", s, buckets[s], n, buckets)
		}
	}
}

// TestPolicyReset: a good session resets the policy (quick again, attempt
// numbers from 1); a session that ends before it proved good continues the
// spread phase; so does a Reconnect only in that it attempts at once.
func TestPolicyReset(t *testing.T) {
	p := newPolicyRun(1, DefaultReconnectSpread)
	p.step(evStart)
	for range 6 {
		p.step(evRefused)
	}
	if p.b.attempt != 7 || p.b.spreading != 6 {
		t.Fatalf("after 6 refusals: attempt %d, spreading %d", p.b.attempt, p.b.spreading)
	}
	if d := p.step(evLostEarly); d < DefaultBackoffMin || p.b.spreading != 7 {
		t.Errorf("a session lost before it proved good: wait %v, spread step %d; want the 7th spread wait", d, p.b.spreading)
	}
	if d := p.step(evLost); d >= time.Second || p.b.attempt != 1 || p.b.spreading != 0 {
		t.Errorf("after a good session: wait %v, attempt %d, spread step %d; want < 1 s, 1, 0", d, p.b.attempt, p.b.spreading)
	}
	if d := p.step(evDown); d < 750*time.Millisecond || d >= 1250*time.Millisecond {
		t.Errorf("broker down after a good session: wait %v, want quick", d)
	}
	if d := p.step(evRequested); d != 0 || p.b.attempt != 1 {
		t.Errorf("Reconnect: wait %v, attempt %d; want 0 and 1", d, p.b.attempt)
	}
}

// TestBrokerDown: only a TCP connection that was refused or had no route is
// "the broker is down"; a handshake refusal or a TCP timeout is not.
func TestBrokerDown(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: &timeoutErr{}}
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("uplink: connect b: %w", &dialError{refused}), true},
		{"no route", fmt.Errorf("uplink: connect b: %w", &dialError{&net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}}), true},
		{"dial timeout", fmt.Errorf("uplink: connect b: %w", &dialError{timeout}), false},
		{"dial deadline", fmt.Errorf("uplink: connect b: %w", &dialError{context.DeadlineExceeded}), false},
		{"TLS alert", fmt.Errorf("uplink: connect b: %w", (&session{}).explainConnect(alert)), false},
		{"handshake", fmt.Errorf("uplink: connect b: %w", explainHandshake(tls.RecordHeaderError{})), false},
		{"refused, not from the dialer", refused, false},
	}
	for _, tt := range tests {
		if got := brokerDown(tt.err); got != tt.want {
			t.Errorf("%s: brokerDown(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

// TestJitterDiffersPerProcess guards the default random source: gateways
// booted together must not share a seed.
func TestJitterDiffersPerProcess(t *testing.T) {
	var a, b Config = validConfig(), validConfig()
	if err := a.fill(); err != nil {
		t.Fatal(err)
	}
	if err := b.fill(); err != nil {
		t.Fatal(err)
	}
	same := 0
	for range 8 {
		if a.rand.Uint64() == b.rand.Uint64() {
			same++
		}
	}
	if same == 8 {
		t.Error("two clients draw the same jitter sequence")
	}
}
