package agent

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/uplink"
	"github.com/jonboulle/clockwork"
)

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
	a := &agent{q: q, clock: clockwork.NewRealClock(), runners: []*sensorRunner{stuck, fine, idle}, up: newTestUplink(t, q)}
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
		newForwarder(q, "gw", 10, time.Second, clockwork.NewRealClock(), slog.Default()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
