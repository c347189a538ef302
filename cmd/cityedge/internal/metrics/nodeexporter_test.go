package metrics

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/metrics/metricstest"
)

// TestNodeExporterServes starts a real node_exporter with only the textfile
// collector on a loopback port, pointed at the directory WriteFile writes
// to, and checks that /metrics serves the snapshot's values.
func TestNodeExporterServes(t *testing.T) {
	bin := metricstest.NodeExporter(t)
	dir := t.TempDir()
	s := fullSnapshot()
	if err := WriteFile(filepath.Join(dir, "cityedge.prom"), s); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var log bytes.Buffer
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--collector.disable-defaults",
		"--collector.textfile", "--collector.textfile.directory="+dir)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when it exits; waitErr is then set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by its PID, ours alone
		<-exited
		if t.Failed() {
			t.Logf("node_exporter log:\n%s", log.String())
		}
	})

	exitErr := func() error { return waitErr }
	body := scrape(t, "http://"+addr+"/metrics", exited, exitErr)
	fams := metricstest.Parse(t, body)
	if errs, ok := metricstest.Sample(t, fams, "node_textfile_scrape_error"); !ok || errs != 0 {
		t.Fatalf("node_textfile_scrape_error = %v (present %v)\n%s", errs, ok, body)
	}
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cityedge_sensor_readings_total", []string{"sensor", "bay-17"}, float64(s.Sensors[0].Readings)},
		{"cityedge_sensor_errors_total", []string{"sensor", "air-1"}, float64(s.Sensors[1].Errors)},
		{"cityedge_buffer_dropped_readings_total", []string{"sensor", "bay-17"}, float64(s.Sensors[0].Dropped)},
		{"cityedge_buffer_backlog_readings", nil, float64(s.BacklogReadings)},
		{"cityedge_buffer_backlog_bytes", nil, float64(s.BacklogBytes)},
		{"cityedge_buffer_oldest_backlog_age_seconds", nil, s.OldestBacklogAge.Seconds()},
		{"cityedge_uplink_connected", nil, 1},
		{"cityedge_uplink_last_ack_age_seconds", nil, s.LastAckAge.Seconds()},
		{"cityedge_certificate_days_left", []string{"cert", "client"}, s.Certs[0].DaysLeft},
		{"cityedge_remote_commands_accepted_total", nil, float64(s.Remote.Accepted)},
		{"cityedge_remote_commands_rejected_total", []string{"reason", "bad_signature"}, 7},
		{"cityedge_info", []string{"agent", "gw-0042"}, 1},
	}
	for _, c := range checks {
		if got, ok := metricstest.Sample(t, fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("served %s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	// A rewrite is served at the next scrape (the collector reads the
	// directory on every scrape).
	s.BacklogReadings = 7
	if err := WriteFile(filepath.Join(dir, "cityedge.prom"), s); err != nil {
		t.Fatal(err)
	}
	if got, _ := metricstest.Sample(t, metricstest.Parse(t, scrape(t, "http://"+addr+"/metrics", exited, exitErr)), "cityedge_buffer_backlog_readings"); got != 7 {
		t.Errorf("after rewrite backlog = %v, want 7", got)
	}
}

// scrape gets url, waiting (bounded) for the exporter to listen.
func scrape(t *testing.T, url string, exited <-chan struct{}, exitErr func() error) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		select {
		case <-exited:
			t.Fatalf("node_exporter exited: %v", exitErr())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return b
			}
			err = fmt.Errorf("status %s, read %v", resp.Status, rerr)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("scrape %s: %v", url, last)
	return nil
}
