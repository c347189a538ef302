package metrics

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	dto "github.com/prometheus/client_model/go"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/metrics/metricstest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.prom")

func fullSnapshot() Snapshot {
	return Snapshot{
		Agent: "gw-0042", Version: `v1.0.0 "rc\1"`,
		Sensors: []Sensor{
			{Name: "bay-17", Readings: 1440, Errors: 0, Dropped: 3},
			{Name: "air-1", Readings: 360, Errors: 2, Dropped: 0},
		},
		BacklogReadings: 1200, BacklogBytes: 98304, OldestBacklogAge: 90500 * time.Millisecond,
		UplinkConnected: true, LastAckAge: 1500 * time.Millisecond, Acked: true,
		Certs:  []Cert{{Name: "client", DaysLeft: 364}, {Name: "ca", DaysLeft: 729.5}},
		Remote: &Remote{Accepted: 4, Rejected: map[string]uint64{"bad_signature": 7, "expired": 1, "replayed": 0}},
	}
}

func TestEncodeParses(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, fullSnapshot()); err != nil {
		t.Fatal(err)
	}
	fams := metricstest.Parse(t, buf.Bytes())
	cases := []struct {
		name   string
		labels []string
		want   float64
		typ    dto.MetricType
	}{
		{"cityedge_info", []string{"agent", "gw-0042", "version", `v1.0.0 "rc\1"`}, 1, dto.MetricType_GAUGE},
		{"cityedge_sensor_readings_total", []string{"sensor", "air-1"}, 360, dto.MetricType_COUNTER},
		{"cityedge_sensor_readings_total", []string{"sensor", "bay-17"}, 1440, dto.MetricType_COUNTER},
		{"cityedge_sensor_errors_total", []string{"sensor", "air-1"}, 2, dto.MetricType_COUNTER},
		{"cityedge_buffer_dropped_readings_total", []string{"sensor", "bay-17"}, 3, dto.MetricType_COUNTER},
		{"cityedge_buffer_backlog_readings", nil, 1200, dto.MetricType_GAUGE},
		{"cityedge_buffer_backlog_bytes", nil, 98304, dto.MetricType_GAUGE},
		{"cityedge_buffer_oldest_backlog_age_seconds", nil, 90.5, dto.MetricType_GAUGE},
		{"cityedge_uplink_connected", nil, 1, dto.MetricType_GAUGE},
		{"cityedge_uplink_last_ack_age_seconds", nil, 1.5, dto.MetricType_GAUGE},
		{"cityedge_certificate_days_left", []string{"cert", "client"}, 364, dto.MetricType_GAUGE},
		{"cityedge_certificate_days_left", []string{"cert", "ca"}, 729.5, dto.MetricType_GAUGE},
		{"cityedge_remote_commands_accepted_total", nil, 4, dto.MetricType_COUNTER},
		{"cityedge_remote_commands_rejected_total", []string{"reason", "bad_signature"}, 7, dto.MetricType_COUNTER},
		{"cityedge_remote_commands_rejected_total", []string{"reason", "replayed"}, 0, dto.MetricType_COUNTER},
	}
	for _, c := range cases {
		got, ok := metricstest.Sample(t, fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
		if typ := fams[c.name].GetType(); typ != c.typ {
			t.Errorf("%s type %v, want %v", c.name, typ, c.typ)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "cityedge_") || f.GetHelp() == "" {
			t.Errorf("%s: help %q", name, f.GetHelp())
		}
		if (f.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: type %v and name disagree", name, f.GetType())
		}
	}
	if len(fams) != 12 {
		t.Errorf("%d families, want 12", len(fams))
	}

	// The fixture shows the exact output (and is what a reviewer reads).
	golden := filepath.Join("testdata", "full.prom")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, buf.Bytes())
	}
}

func TestEncodeMinimal(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, Snapshot{}); err != nil {
		t.Fatal(err)
	}
	fams := metricstest.Parse(t, buf.Bytes())
	for _, absent := range []string{"cityedge_info", "cityedge_uplink_last_ack_age_seconds", "cityedge_remote_commands_accepted_total",
		"cityedge_sensor_readings_total", "cityedge_certificate_days_left"} {
		if _, ok := fams[absent]; ok {
			t.Errorf("%s written for an empty snapshot", absent)
		}
	}
	if v, ok := metricstest.Sample(t, fams, "cityedge_uplink_connected"); !ok || v != 0 {
		t.Errorf("connected = %v, %v", v, ok)
	}
}

func TestFormatFloat(t *testing.T) {
	for f, want := range map[float64]string{0: "0", 1e15: "1e+15", -3.25: "-3.25", math.Inf(1): "+Inf", math.Inf(-1): "-Inf", math.NaN(): "NaN"} {
		if got := formatFloat(f); got != want {
			t.Errorf("formatFloat(%v) = %s, want %s", f, got, want)
		}
	}
	var buf bytes.Buffer
	if err := Encode(&buf, Snapshot{Certs: []Cert{{Name: "a\nb", DaysLeft: math.Inf(-1)}}}); err != nil {
		t.Fatal(err)
	}
	if v, ok := metricstest.Sample(t, metricstest.Parse(t, buf.Bytes()), "cityedge_certificate_days_left", "cert", "a\nb"); !ok || !math.IsInf(v, -1) {
		t.Fatalf("escaped label: %v %v\n%s", v, ok, buf.Bytes())
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cityedge.prom")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, fullSnapshot()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	metricstest.Parse(t, b)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %v", entries)
	}
	err = WriteFile(filepath.Join(dir, "missing", "cityedge.prom"), Snapshot{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "missing", "cityedge.prom")) {
		t.Fatalf("missing directory: %v", err)
	}
}

func TestWriterRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cityedge.prom")
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	var n atomic.Int64
	w := &Writer{Path: path, Clock: clock, Snapshot: func() Snapshot {
		return Snapshot{BacklogReadings: uint64(n.Add(1))}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	backlog := func() float64 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := metricstest.Sample(t, metricstest.Parse(t, b), "cityedge_buffer_backlog_readings")
		return v
	}
	// The ticker exists: the first write is done.
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if v := backlog(); v != 1 {
		t.Fatalf("first write: backlog %v", v)
	}
	clock.Advance(DefaultInterval - time.Nanosecond)
	if n.Load() != 1 {
		t.Fatalf("wrote %d times before the interval", n.Load())
	}
	clock.Advance(time.Nanosecond)
	waitFor(t, func() bool { return n.Load() == 2 })
	clock.Advance(DefaultInterval)
	waitFor(t, func() bool { return n.Load() == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n.Load() != 4 || backlog() != 4 {
		t.Fatalf("final write missing: %d writes", n.Load())
	}
	if err := (&Writer{}).Run(context.Background()); err == nil {
		t.Fatal("a writer without path ran")
	}
}

// waitFor waits for the writer goroutine to act on a tick the test already
// delivered (an ordering wait, not a timing assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(errors.New("writer did not act on the tick"))
		}
		time.Sleep(time.Millisecond)
	}
}
