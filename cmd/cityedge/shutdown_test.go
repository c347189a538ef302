package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// TestStopDeliversTheLastReadings: SIGTERM (make demo's Ctrl-C, systemctl
// stop) with the broker up lets the agent deliver what it sampled before it
// says goodbye: the buffer is empty afterwards and the log says so. With a
// broker that stopped answering, the agent still exits promptly and says
// how many readings wait for the next start.
func TestStopDeliversTheLastReadings(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	s := newSetup(t, b, b.PKI.Client, "")
	col := collect(t, b, "cityedge/test/gw-test")
	p := startAgent(t, s.config, "--simulate")
	waitFor(t, "delivery", 15*time.Second, func() bool { return len(col.snapshot()) > 5 })
	code, _ := p.stop(t)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if left := remaining(t, s.stateDir); len(left) != 0 {
		t.Errorf("%d readings left in the buffer after a stop with the broker up:\n%s", len(left), p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "the buffer is empty") {
		t.Errorf("the log does not say that everything was delivered:\n%s", p.stderr.String())
	}

	// A broker that accepts but no longer answers: nothing is acknowledged.
	p = startAgent(t, s.config, "--simulate")
	waitFor(t, "delivery again", 15*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "uplink: connected")
	})
	b.Pause()
	defer b.Resume()
	time.Sleep(1500 * time.Millisecond) // readings sampled meanwhile
	code, took := p.stop(t)
	if code != 0 || took > 8*time.Second {
		t.Errorf("with the broker silent: exit %d after %v, want 0 within 8 s", code, took)
	}
	if !strings.Contains(p.stderr.String(), "delivered at the next start") {
		t.Errorf("the log does not say what waits for the next start:\n%s", p.stderr.String())
	}
}
