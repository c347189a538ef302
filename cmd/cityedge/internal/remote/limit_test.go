package remote

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestLimiter(t *testing.T) {
	clock := clockwork.NewFakeClockAt(testNow)
	l := NewLimiter(clock, 10*time.Second, 3)
	take := func() int {
		n := 0
		for l.Allow() {
			n++
			if n > 100 {
				t.Fatal("unbounded")
			}
		}
		return n
	}
	if n := take(); n != 3 {
		t.Fatalf("burst %d, want 3", n)
	}
	clock.Advance(9999 * time.Millisecond)
	if l.Allow() {
		t.Fatal("token before the interval")
	}
	clock.Advance(time.Millisecond)
	if n := take(); n != 1 {
		t.Fatalf("after one interval %d, want 1", n)
	}
	clock.Advance(25 * time.Second) // 2.5 intervals
	if n := take(); n != 2 {
		t.Fatalf("after 2.5 intervals %d, want 2", n)
	}
	clock.Advance(5 * time.Second) // the half interval left over counts
	if n := take(); n != 1 {
		t.Fatalf("after the rest %d, want 1", n)
	}
	clock.Advance(time.Hour)
	if n := take(); n != 3 {
		t.Fatalf("after an hour %d, want the burst 3", n)
	}
}

// TestUnsignedNamingAgentRateLimited: a publisher without the key can make
// the agent answer, but only at the limited rate; accepted commands are
// always answered.
func TestUnsignedNamingAgentRateLimited(t *testing.T) {
	r := newRig(t, "", func(o *Options) { o.AnswerBurst = 2; o.AnswerEvery = time.Minute })
	forged := func(i int) []byte {
		return []byte(compact(t, map[string]string{"alg": "none"}, mustJSON(t, payload(func(p *Payload) { p.JTI = fmt.Sprint("f", i) })), nil))
	}
	answered := 0
	for i := range 10 {
		if _, pub := r.d.Handle(context.Background(), forged(i)); pub {
			answered++
		}
	}
	if answered != 2 {
		t.Fatalf("answered %d of 10 forged commands, want 2", answered)
	}
	tok := signed(t, testKey("ops"), payload())
	if _, pub := r.d.Handle(context.Background(), []byte(tok)); !pub {
		t.Fatal("accepted command not answered while the limit is exhausted")
	}
	r.clock.Advance(time.Minute)
	if _, pub := r.d.Handle(context.Background(), forged(11)); !pub {
		t.Fatal("no answer after the interval")
	}
	s := r.d.Stats()
	if s.Rejected[ReasonBadAlg] != 11 || s.AnswersSuppressed != 8 || s.Accepted != 1 {
		t.Fatalf("stats %+v", s)
	}
}
