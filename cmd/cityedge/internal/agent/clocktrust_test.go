package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/jonboulle/clockwork"
)

// lookCounter is a gateway whose state the test may change while the rule
// runs, and which tells each of the rule's looks at the kernel's state.
type lookCounter struct {
	mu    *sync.Mutex
	g     *gateway
	looks chan struct{}
}

func (l lookCounter) Wall() time.Time     { l.mu.Lock(); defer l.mu.Unlock(); return l.g.Wall() }
func (l lookCounter) Boot() time.Duration { l.mu.Lock(); defer l.mu.Unlock(); return l.g.Boot() }
func (l lookCounter) BootID() uint32      { return l.g.BootID() }
func (l lookCounter) Sync() (clocksync.Sync, error) {
	l.mu.Lock()
	s, err := l.g.Sync()
	l.mu.Unlock()
	l.looks <- struct{}{}
	return s, err
}

// TestClockTrustedCallsBack: when the clock becomes trusted, the rule calls
// onTrusted once (the agent reconnects at once: TLS material looked not
// yet valid to a clock years behind), and not again while it stays trusted.
func TestClockTrustedCallsBack(t *testing.T) {
	clk := clockwork.NewFakeClockAt(ruleTruth)
	g := &gateway{clk: clk, bootAt: ruleTruth.Add(-30 * time.Second), bootID: 7, wallErr: -5 * 365 * 24 * time.Hour}
	var calls atomic.Int32
	_, m, look := runRule(t, g, ruleBuffer(t), func(c *clockRule) {
		c.onTrusted = func() { calls.Add(1) } // on run's goroutine, before its next look
	})
	for range 3 {
		look()
	}
	m.mu.Lock()
	g.synced, g.wallErr = true, 0 // NTP
	m.mu.Unlock()
	for range 4 {
		look()
	}
	// The callback of the last look ran before the next look began.
	clk.Advance(clockCheckEvery)
	<-m.looks
	if n := calls.Load(); n != 1 {
		t.Errorf("onTrusted called %d times, want 1", n)
	}
}

// TestEarlierRunCountedOnlyWhileUntrusted: the readings an earlier run
// buffered are read for the held count only once the clock is not
// trusted; a synced gateway never reads its backlog for it.
func TestEarlierRunCountedOnlyWhileUntrusted(t *testing.T) {
	clk := clockwork.NewFakeClockAt(ruleTruth)
	g := &gateway{clk: clk, bootAt: ruleTruth.Add(-30 * time.Second), bootID: 7, synced: true, maxError: 10 * time.Millisecond}
	q := ruleBuffer(t)
	if _, err := q.Append(context.Background(), []buffer.Record{{Key: "air-1", Data: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	c, m, look := runRule(t, g, q, func(c *clockRule) { c.earlierRun(q) })
	begun := func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.scanned }
	for range 3 {
		look()
	}
	if !c.tr.Trusted() || begun() {
		t.Fatalf("trusted %v: the earlier run's count began %v, want not while trusted", c.tr.Trusted(), begun())
	}
	m.mu.Lock()
	g.synced, g.wallErr = false, time.Hour // a step: not trusted any more
	m.mu.Unlock()
	for range 2 {
		look()
	}
	if c.tr.Trusted() || !begun() {
		t.Fatalf("trusted %v: the earlier run's count began %v, want begun once not trusted", c.tr.Trusted(), begun())
	}
}

// ruleBuffer is a buffer for the clock rule's tests, on the real clock: on
// the fake one its commit timer could be the one waiter look's
// BlockUntilContext sees before run's ticker exists, and the tick that
// look advances would then be lost.
func ruleBuffer(t *testing.T) *buffer.Queue {
	t.Helper()
	q, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// runRule makes the clock rule of gateway g over q (setup, when not nil,
// prepares it) and runs it until the test ends. look lets one check
// interval pass on g's fake clock and waits for the rule's look at it.
func runRule(t *testing.T, g *gateway, q *buffer.Queue, setup func(*clockRule)) (*clockRule, lookCounter, func()) {
	t.Helper()
	m := lookCounter{&sync.Mutex{}, g, make(chan struct{}, 1)}
	c := newClockRule(m, ruleBuild, time.Hour, q, g.clk, slog.New(slog.DiscardHandler))
	<-m.looks // New's first look
	if setup != nil {
		setup(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	look := func() {
		t.Helper()
		if err := g.clk.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		g.clk.Advance(clockCheckEvery)
		<-m.looks
	}
	return c, m, look
}
