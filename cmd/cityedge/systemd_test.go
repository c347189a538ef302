package main

import (
	"crypto/tls"
	"errors"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/uplink"
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

// TestStallsWithholdWatchdog: a sensor stuck in one step is a stall, which
// stops the watchdog pings; an idle or briefly busy one is not.
func TestStallsWithholdWatchdog(t *testing.T) {
	q := openTestQueue(t)
	now := time.Now()
	stuck := &sensorRunner{cfg: config.SensorConfig{Name: "air-1"}}
	stuck.busySince.Store(now.Add(-2 * stallLimit).UnixNano())
	fine := &sensorRunner{cfg: config.SensorConfig{Name: "air-2"}}
	fine.busySince.Store(now.Add(-time.Second).UnixNano())
	idle := &sensorRunner{cfg: config.SensorConfig{Name: "bay-1"}}
	a := &agent{q: q, runners: []*sensorRunner{stuck, fine, idle}, up: newTestUplink(t, q)}
	s := a.stalls(now)
	if len(s) != 1 || !strings.Contains(s[0], "air-1") {
		t.Fatalf("stalls = %v, want only air-1", s)
	}
	stuck.busySince.Store(0)
	if s := a.stalls(now); len(s) != 0 {
		t.Fatalf("stalls = %v after recovery", s)
	}
}

// newTestUplink returns an uplink client that is never run: its State is
// that of a client not yet connected.
func newTestUplink(t *testing.T, q *buffer.Queue) *uplink.Client {
	t.Helper()
	c, err := uplink.New(uplink.Config{Brokers: []string{"mqtts://127.0.0.1:1"}, ClientID: "gw", TopicPrefix: "t",
		TLSConfig: func() (*tls.Config, error) { return nil, errors.New("unused") }},
		newForwarder(q, "gw", 10, time.Second, nil, slog.Default()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
