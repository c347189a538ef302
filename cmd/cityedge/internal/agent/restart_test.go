package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/jonboulle/clockwork"
)

const trialTOML = `[agent]
id = "gw-1"
state_dir = "@STATE@"
[uplink]
brokers = ["mqtts://127.0.0.1:1"]
ca_file = "/x/ca.pem"
cert_file = "/x/c.pem"
key_file = "/x/c.key"
[remote]
confirm_within = "30s"
[[sensors]]
name = "bay-1"
driver = "gpio-presence"
pin = "GPIO17"
`

// trialAgent is an agent whose configuration in force was pushed (first
// push: the --config file was in force before), with a trial recorded, an
// uplink that never connects, and a fake clock.
func trialAgent(t *testing.T) (*agent, *clockwork.FakeClock) {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	text := []byte(strings.ReplaceAll(trialTOML, "@STATE@", state))
	base := filepath.Join(dir, "cityedge.toml")
	if err := os.WriteFile(base, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, config.RemoteFile), text, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(state, trialName), trialFile{JTI: "j-1", Previous: prevLocal}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadInForce(base, nil)
	if err != nil || cfg.Source() != "remote" {
		t.Fatalf("load: %v", err)
	}
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	clk := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	a := &agent{cfg: cfg, log: slog.New(slog.DiscardHandler), clock: clk, q: q}
	a.up = newTestUplink(t, q)
	if err := a.openOps(Deps{}); err != nil {
		t.Fatal(err)
	}
	return a, clk
}

// TestTrialRollsBackAtDeadline: an unconfirmed pushed configuration stays in
// force until exactly remote.confirm_within after the first start under it,
// and is then rolled back (the --config file in force again, the failed
// one kept, the rollback recorded) and a restart requested.
func TestTrialRollsBackAtDeadline(t *testing.T) {
	a, clk := trialAgent(t)
	start := clk.Now()
	if a.ops.trial == nil || !a.ops.trial.Deadline.Equal(start.Add(30*time.Second)) {
		t.Fatalf("trial %+v, want a deadline 30s after start", a.ops.trial)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { a.watchTrial(ctx); close(done) }()
	state := a.cfg.Agent.StateDir
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for clk.Since(start) < 30*time.Second-250*time.Millisecond {
		clk.Advance(250 * time.Millisecond)
		if err := clk.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if a.restarting() {
		t.Fatalf("rolled back %v after start, before the deadline", clk.Since(start))
	}
	if _, err := os.Stat(filepath.Join(state, config.RemoteFile)); err != nil {
		t.Fatal("remote.toml gone before the deadline")
	}
	clk.Advance(250 * time.Millisecond)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no rollback at the deadline")
	}
	if !a.restarting() || !errors.Is(a.exitErr(), ErrRestart) {
		t.Fatal("no restart requested")
	}
	for name, want := range map[string]bool{config.RemoteFile: false, config.RemoteFile + failedSuffix: true,
		trialName: false, rollbackName: true} {
		if _, err := os.Stat(filepath.Join(state, name)); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", name, err == nil, want)
		}
	}
	var rb rollbackFile
	if ok, err := readJSON(filepath.Join(state, rollbackName), &rb); !ok || err != nil || rb.JTI != "j-1" ||
		rb.Restored != a.cfg.BasePath() || !rb.Time.Equal(start.Add(30*time.Second)) {
		t.Fatalf("rollback record %+v (%v)", rb, err)
	}
	// After the restart the --config file is in force and the rollback is
	// in status until the next push.
	cfg, err := config.LoadInForce(a.cfg.BasePath(), nil)
	if err != nil || cfg.Source() != "local" {
		t.Fatalf("after rollback: %v %s", err, cfg.Source())
	}
	b := &agent{cfg: cfg, log: a.log, clock: clk, q: a.q, up: a.up}
	if err := b.openOps(Deps{}); err != nil {
		t.Fatal(err)
	}
	var st Status
	b.fillRemoteStatus(&st)
	if st.Remote.Rollback == nil || st.Remote.Rollback.JTI != "j-1" || st.ConfigSource != "local" || st.Remote.Pending != nil {
		t.Fatalf("status %+v %+v", st, st.Remote)
	}
}

// TestTrialDeadlineSurvivesRestart: the deadline is set at the first start
// and kept; a start after it rolls back at once.
func TestTrialDeadlineSurvivesRestart(t *testing.T) {
	a, clk := trialAgent(t)
	deadline := a.ops.trial.Deadline
	clk.Advance(time.Hour) // the agent crashed and came back late
	b := &agent{cfg: a.cfg, log: a.log, clock: clk, q: a.q, up: a.up}
	if err := b.openOps(Deps{}); err != nil {
		t.Fatal(err)
	}
	if !b.ops.trial.Deadline.Equal(deadline) {
		t.Fatalf("deadline moved from %v to %v", deadline, b.ops.trial.Deadline)
	}
	b.watchTrial(context.Background()) // returns at once: past the deadline
	if !b.restarting() {
		t.Fatal("no rollback past the deadline")
	}
}

// TestFailedStartRollsBack: an agent that cannot run under a pushed
// configuration on trial rolls it back and restarts instead of failing.
func TestFailedStartRollsBack(t *testing.T) {
	a, _ := trialAgent(t)
	boom := errors.New("boom")
	if err := failedStart(a.cfg, a.log, boom); !errors.Is(err, ErrRestart) {
		t.Fatalf("failedStart = %v, want ErrRestart", err)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.Agent.StateDir, config.RemoteFile)); err == nil {
		t.Fatal("remote.toml still in force")
	}
	// Without a trial an error stays an error.
	if err := failedStart(a.cfg, a.log, boom); !errors.Is(err, boom) {
		t.Fatalf("failedStart without trial = %v", err)
	}
}
