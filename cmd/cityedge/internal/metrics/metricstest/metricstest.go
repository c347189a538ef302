// Package metricstest helps tests read what the agent's metrics text file
// says, the way Prometheus does: the real prometheus-node-exporter binary,
// and prometheus/common's own parser. Tests only; the agent never links it.
package metricstest

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// RequireEnv turns a missing prometheus-node-exporter from a skip into a
// failure (CI installs the Debian package and sets it).
const RequireEnv = "CITYEDGE_REQUIRE_NODE_EXPORTER"

// NodeExporter returns the path of prometheus-node-exporter, skipping the
// test when it is missing (failing it under RequireEnv).
func NodeExporter(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/prometheus-node-exporter", "prometheus-node-exporter", "node_exporter"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("prometheus-node-exporter not found (%s is set): apt-get install prometheus-node-exporter", RequireEnv)
	}
	t.Skip("SKIP: prometheus-node-exporter not found: apt-get install prometheus-node-exporter")
	return ""
}

// Parse reads the text exposition format with Prometheus' own parser.
func Parse(t testing.TB, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return fams
}

// Sample returns the value of family name whose labels include want (name,
// value pairs); a family of a type other than counter, gauge or untyped
// fails the test.
func Sample(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if got[want[i]] != want[i+1] {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_UNTYPED:
			return m.GetUntyped().GetValue(), true
		}
		t.Fatalf("%s: type %v", name, f.GetType())
	}
	return 0, false
}
