package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/scripts/testlog"
)

// refusedBroker returns a broker URL on which nothing listens: every
// connection attempt is refused at once.
func refusedBroker(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "mqtts://" + addr
}

// TestReconnectAnnouncesEachWait runs a Client on the fake clock against a
// broker that refuses TCP: every wait is announced exactly once at INFO with
// its delay, the attempt number and the last error; State shows the next
// attempt; the waits are quick (about 1 s) for quickFor and then spread, and
// never longer than BackoffMax.
func TestReconnectAnnouncesEachWait(t *testing.T) {
	fc := clockwork.NewFakeClock()
	logs := &testlog.Buffer{}
	cfg := validConfig()
	cfg.Brokers = []string{refusedBroker(t)}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.clock = fc
	cfg.rand = rand.New(rand.NewPCG(1, 2))
	c := start(t, cfg, newMemSource(0))
	began := fc.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const announce = "uplink: reconnecting in "
	spread := 0
	for i := 1; i <= 20; i++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("announcement %d", i), func() bool { return len(logs.Lines(announce)) >= i })
		lines := logs.Lines(announce)
		if len(lines) != i {
			t.Fatalf("%d announcements for %d waits:\n%s", len(lines), i, strings.Join(lines, "\n"))
		}
		st := c.State()
		wait := st.NextAttempt.Sub(fc.Now())
		elapsed := fc.Since(began)
		want := fmt.Sprintf(`level=INFO msg="%s%s" attempt=%d err="uplink: connect %s: dial tcp`, announce, delayText(wait), i+1, cfg.Brokers[0])
		if !strings.Contains(lines[i-1], want) || !strings.Contains(lines[i-1], "connection refused") {
			t.Fatalf("announcement %d:\n%s\nwant it to contain %s ... connection refused", i, lines[i-1], want)
		}
		if st.Attempts != i || st.Connected {
			t.Fatalf("wait %d: State.Attempts %d, connected %v; want %d, false", i, st.Attempts, st.Connected, i)
		}
		switch {
		case wait > c.cfg.BackoffMax:
			t.Fatalf("wait %d: %v, beyond BackoffMax", i, wait)
		case elapsed < quickFor && (wait < 750*time.Millisecond || wait >= 1250*time.Millisecond):
			t.Fatalf("wait %d at %v into the outage: %v, want about 1 s", i, elapsed, wait)
		case elapsed >= quickFor && wait < DefaultBackoffMin:
			t.Fatalf("wait %d at %v into the outage: %v, want the spread phase", i, elapsed, wait)
		case elapsed >= quickFor && wait >= 1250*time.Millisecond:
			spread++
		}
		if err := fc.BlockUntilContext(ctx, 1); err != nil { // Run's timer
			t.Fatal(err)
		}
		fc.Advance(wait)
	}
	if spread < 5 {
		t.Errorf("only %d of the waits after %v were longer than the quick cadence", spread, quickFor)
	}
	if n := len(logs.Lines("uplink: connection failed")) - len(logs.Lines("level=DEBUG msg=\"uplink: connection failed")); n != 1 {
		t.Errorf("%d warnings for one unchanged cause, want 1", n)
	}
}
