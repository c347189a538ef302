package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
	"github.com/cityedge/cityedge/scripts/testbroker"
)

// notifyListener is a stand-in for systemd's notify socket; it keeps every
// line received.
type notifyListener struct {
	path  string
	mu    sync.Mutex
	lines []string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 8192)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.lines = append(n.lines, strings.Split(string(buf[:k]), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

// count returns how many lines equal line.
func (n *notifyListener) count(line string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, g := range n.lines {
		if g == line {
			c++
		}
	}
	return c
}

// last returns the last line with prefix.
func (n *notifyListener) last(prefix string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := len(n.lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(n.lines[i], prefix) {
			return n.lines[i]
		}
	}
	return ""
}

// TestLooseKeyAtStart: the agent starts with a private key readable by
// others. It does not exit: it samples and buffers, never uses the key (no
// session reaches the broker), and says why with the fix in its log,
// systemd's STATUS=, its live status and --diagnose. Once the key is
// chmod 600, the file watch picks it up without a signal or restart, the
// agent connects, and every reading taken meanwhile is delivered.
func TestLooseKeyAtStart(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	live := secCopyClient(t, t.TempDir(), b.PKI.Client)
	if err := os.Chmod(live.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSetup(t, b, live, "")
	col := collect(t, b, secPrefix)
	notify := listenNotify(t)
	cmd := exec.Command(agentBinary(t), "--config", s.config, "--simulate")
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+notify.path)
	p := startAgentCmd(t, cmd)

	const fix = "chmod 600 " // certs words the fix with the key's path
	waitFor(t, "the log to name the loose key and the fix", 10*time.Second, func() bool {
		return logHas(p.stderr.String(), "TLS material unusable", fix+live.KeyFile)
	})
	waitFor(t, "STATUS= to say why the uplink is down", 10*time.Second, func() bool {
		return strings.Contains(notify.last("STATUS="), "TLS material unusable") && strings.Contains(notify.last("STATUS="), fix)
	})
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	var st *agent.LiveState
	waitFor(t, "the live status to show readings and the TLS problem", 10*time.Second, func() bool {
		st, _ = agent.Query(context.Background(), cfg, slog.New(slog.DiscardHandler))
		return st != nil && st.Certs != nil && strings.Contains(st.Certs.Problem, fix) && st.Backlog > 20
	})
	t.Logf("status while the key is loose: backlog %d, certs.problem %q", st.Backlog, st.Certs.Problem)
	r, _, out := runDiagnose(t, s.config)
	if c := verdictOf(r, "certs", "client"); c.Verdict != diagnose.Fail || !strings.Contains(c.Detail, fix) {
		t.Errorf("--diagnose certs check = %+v\n%s", c, out)
	}
	if n := agentSessions(b); n != 0 {
		t.Fatalf("the broker saw %d sessions of the agent with a loose key:\n%s", n, b.Log())
	}
	if n := len(col.snapshot()); n != 0 {
		t.Fatalf("%d records reached the broker with a loose key", n)
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("the agent exited: %s", p.stderr.String())
	}

	if err := os.Chmod(live.KeyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	// Watch polls every 10 s and acts once the files stayed the same for
	// one interval.
	waitFor(t, "a session once the key is 0600", 35*time.Second, func() bool { return agentSessions(b) > 0 })
	n := len(col.snapshot())
	waitFor(t, "live readings after the backlog", 15*time.Second, func() bool { return len(col.snapshot()) > n+20 })
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	time.Sleep(300 * time.Millisecond) // the last messages reach the subscriber
	recs := col.snapshot()
	distinct, repeats := checkDelivery(t, recs, remaining(t, s.stateDir))
	in, err := buffer.Inspect(filepath.Join(s.stateDir, config.BufferFile))
	if err != nil {
		t.Fatal(err)
	}
	first := recs[0].seq
	for _, r := range recs {
		first = min(first, r.seq)
	}
	if first != in.Epoch+1 {
		t.Errorf("the first reading delivered has seq %d; the buffer's first was %d", first, in.Epoch+1)
	}
	if in.DroppedTotal != 0 {
		t.Errorf("%d readings dropped", in.DroppedTotal)
	}
	t.Logf("%d distinct readings delivered (%d repeated records), from the first taken", distinct, repeats)
}
