package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// TestSystemdNotify runs the real binary the way systemd's Type=notify with
// WatchdogSec= does: READY=1 once sampling runs, WATCHDOG=1 pings while the
// pipeline makes progress, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	s := newSetup(t, b, b.PKI.Client, "")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, strings.Split(string(buf[:n]), "\n")...)
			mu.Unlock()
		}
	}()
	has := func(prefix string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got {
			if strings.HasPrefix(g, prefix) {
				return true
			}
		}
		return false
	}
	cmd := exec.Command(agentBinary(t), "--config", s.config, "--simulate")
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=600000")
	p := startAgentCmd(t, cmd)
	waitFor(t, "READY=1", 10*time.Second, func() bool { return has("READY=1") })
	waitFor(t, "WATCHDOG=1", 5*time.Second, func() bool { return has("WATCHDOG=1") })
	waitFor(t, "a STATUS= line", 5*time.Second, func() bool { return has("STATUS=connected to ") })
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	waitFor(t, "STOPPING=1", 2*time.Second, func() bool { return has("STOPPING=1") })
}
