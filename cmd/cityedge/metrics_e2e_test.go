package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/metrics/metricstest"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote/remotetest"
)

// TestMetricsServedByNodeExporter: the real agent writes its metrics text
// file, a real prometheus-node-exporter serves it from its textfile
// directory, and the values served match the agent's own status (taken
// over the control socket right after the scrape).
func TestMetricsServedByNodeExporter(t *testing.T) {
	bin := metricstest.NodeExporter(t)
	r := newRemoteRig(t, "5m")
	ag := startAgent(t, r.s.config, "--simulate")
	r.waitOnline(t)

	// One accepted and two rejected commands, for the remote counters.
	if code, _, out := r.ctl(t, "status"); code != 0 {
		t.Fatalf("status: %s", out)
	}
	intruder := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	fs := remotetest.Forgeries(r.ops, intruder, "gw-test", time.Now(), config.DefaultMaxAge)
	r.publish(t, fs[0].Token, fs[3].Token) // bad_signature, bad_alg
	waitFor(t, "rejections logged", 10*time.Second, func() bool {
		return strings.Count(ag.stderr.String(), "remote command rejected") == 2
	})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log bytes.Buffer
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--collector.disable-defaults",
		"--collector.textfile", "--collector.textfile.directory="+filepath.Dir(r.metrics))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by its PID, ours alone
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node_exporter log:\n%s", log.String())
		}
	})

	// Scrape until the file shows the rejections (written every second).
	var fams map[string]*dto.MetricFamily
	waitFor(t, "the remote counters served", 20*time.Second, func() bool {
		fams = scrapeFamilies(t, "http://"+addr+"/metrics")
		n, _ := metricstest.Sample(t, fams, "cityedge_remote_commands_rejected_total", "reason", "bad_alg")
		return n == 1
	})
	cfg, err := config.Load(r.s.config)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := agent.Query(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if live == nil {
		t.Fatal("the agent's control socket did not answer")
	}
	if v, ok := metricstest.Sample(t, fams, "node_textfile_scrape_error"); !ok || v != 0 {
		t.Fatalf("node_textfile_scrape_error %v (present %v)", v, ok)
	}
	exact := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cityedge_info", []string{"agent", live.Agent, "version", live.Version}, 1},
		{"cityedge_uplink_connected", nil, 1},
		{"cityedge_remote_commands_accepted_total", nil, float64(live.Remote.Accepted)},
		{"cityedge_remote_commands_rejected_total", []string{"reason", "bad_signature"}, float64(live.Remote.ByReason["bad_signature"])},
		{"cityedge_remote_commands_rejected_total", []string{"reason", "bad_alg"}, float64(live.Remote.ByReason["bad_alg"])},
		{"cityedge_remote_commands_rejected_total", []string{"reason", "replayed"}, 0},
	}
	for _, c := range exact {
		if got, ok := metricstest.Sample(t, fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), status says %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if live.Remote.Accepted != 1 || live.Remote.Rejected != 2 {
		t.Errorf("status remote %+v, want 1 accepted, 2 rejected", live.Remote)
	}
	// Certificate days: the status rounds down.
	if got, ok := metricstest.Sample(t, fams, "cityedge_certificate_days_left", "cert", "client"); !ok || int(math.Floor(got)) != live.Certs.ClientDaysLeft {
		t.Errorf("client certificate days %v, status %d", got, live.Certs.ClientDaysLeft)
	}
	if got, ok := metricstest.Sample(t, fams, "cityedge_certificate_days_left", "cert", "ca"); !ok || int(math.Floor(got)) != live.Certs.CADaysLeft {
		t.Errorf("CA certificate days %v, status %d", got, live.Certs.CADaysLeft)
	}
	// Counters that grow: the status, taken after the scrape, is at or
	// above the file (written up to a second before it), by at most a few
	// seconds of readings.
	if len(live.Sensors) != 3 {
		t.Fatalf("status has %d sensors, want 3", len(live.Sensors))
	}
	for name, s := range live.Sensors {
		got, ok := metricstest.Sample(t, fams, "cityedge_sensor_readings_total", "sensor", name)
		if !ok || got > float64(s.Readings) || float64(s.Readings)-got > 60 || got == 0 {
			t.Errorf("sensor %s: %v readings served, status %d", name, got, s.Readings)
		}
		if e, _ := metricstest.Sample(t, fams, "cityedge_sensor_errors_total", "sensor", name); e != float64(s.Errors) {
			t.Errorf("sensor %s: %v errors served, status %d", name, e, s.Errors)
		}
		if d, _ := metricstest.Sample(t, fams, "cityedge_buffer_dropped_readings_total", "sensor", name); d != float64(live.DroppedBy[name]) {
			t.Errorf("sensor %s: %v dropped served, status %d", name, d, live.DroppedBy[name])
		}
	}
	if age, ok := metricstest.Sample(t, fams, "cityedge_uplink_last_ack_age_seconds"); !ok || age < 0 || age > 10 {
		t.Errorf("last ack age %v (present %v) while readings flow", age, ok)
	}
	if b, ok := metricstest.Sample(t, fams, "cityedge_buffer_backlog_readings"); !ok || b > 200 {
		t.Errorf("backlog %v (present %v) while readings flow", b, ok)
	}
	for _, f := range []string{"cityedge_buffer_backlog_bytes", "cityedge_buffer_oldest_backlog_age_seconds"} {
		if _, ok := metricstest.Sample(t, fams, f); !ok {
			t.Errorf("%s not served", f)
		}
	}
}

func scrapeFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil // not listening yet
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	return metricstest.Parse(t, body)
}
