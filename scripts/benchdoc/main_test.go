package main

import (
	"strings"
	"testing"
	"time"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/cityedge/cityedge/buffer
cpu: Test CPU @ 2.0GHz
BenchmarkAppend100-2   	    4000	    420000 ns/op	    238000 readings/s
BenchmarkRawBolt100-2  	    5000	    345000 ns/op	    290000 readings/s
2026/12/06 INFO noise
PASS
ok  	github.com/cityedge/cityedge/buffer	12.3s
pkg: github.com/cityedge/cityedge/uplink
BenchmarkRawPahoMTLS-2 	   10000	      2100 ns/op	   4700000 readings/s
pkg: github.com/cityedge/cityedge/cmd/cityedge
BenchmarkDrainMTLS-2   	   10000	      9000 ns/op	    600000 readings/s
`

func TestWrite(t *testing.T) {
	r := parse(strings.NewReader(sample))
	if len(r.results) != 4 {
		t.Fatalf("parsed %d results, want 4", len(r.results))
	}
	wantAll(t, renderRun(r),
		"Written by `make bench` on 2026-12-06 10:00 UTC",
		"Test CPU @ 2.0GHz",
		"| **0.82** | ≥ 0.8 met |",
		"| **0.13** | ≥ 0.5 **not met** |",
		"| `BenchmarkAppend100` | 4000 | 420,000 ns/op, 238,000 readings/s |",
		"### github.com/cityedge/cityedge/buffer (linux/amd64)",
	)
}

func TestParseLine(t *testing.T) {
	cases := []struct {
		line string
		ok   bool
		name string
	}{
		{"BenchmarkX-2 10 5 ns/op", true, "BenchmarkX"},
		{"BenchmarkX 10 5 ns/op 2.5 MB/s", true, "BenchmarkX"},
		{"BenchmarkX-2 --- FAIL", false, ""},
		{"BenchmarkX-2 10 five ns/op", false, ""},
		{"BenchmarkX-2", false, ""},
	}
	for _, c := range cases {
		res := parseLine(c.line)
		if (res != nil) != c.ok || (res != nil && res.name != c.name) {
			t.Errorf("parseLine(%q) = %+v, want ok=%v name=%q", c.line, res, c.ok, c.name)
		}
	}
}

// TestMedians: a benchmark run several times (go test -count 3) is one row
// whose figures are the medians of its runs, and the ratio is taken from
// them: one unlucky fsync-bound run does not decide the verdict.
func TestMedians(t *testing.T) {
	const repeated = `goos: linux
goarch: amd64
pkg: github.com/cityedge/cityedge/buffer
BenchmarkAppend100-2   	    4000	    420000 ns/op	    182000 readings/s
BenchmarkAppend100-2   	    4200	    410000 ns/op	    240000 readings/s
BenchmarkAppend100-2   	    4100	    415000 ns/op	    245000 readings/s
BenchmarkRawBolt100-2  	    5000	    345000 ns/op	    351000 readings/s
BenchmarkRawBolt100-2  	    5000	    345000 ns/op	    290000 readings/s
BenchmarkRawBolt100-2  	    5000	    345000 ns/op	    280000 readings/s
`
	r := parse(strings.NewReader(repeated))
	if len(r.results) != 2 {
		t.Fatalf("parsed %d results, want 2 (one per benchmark)", len(r.results))
	}
	if a := find(r, "BenchmarkAppend100"); a.metrics["readings/s"] != 240000 || a.iterations != 4100 || a.runs != 3 {
		t.Fatalf("Append100 = %+v; want the medians 240000 readings/s, 4100 iterations, of 3 runs", a)
	}
	wantAll(t, renderRun(r),
		"| 240,000 / 290,000 | **0.83** | ≥ 0.8 met |",
		"| `BenchmarkAppend100` | 4100 (median of 3 runs) | 415,000 ns/op, 240,000 readings/s |",
	)
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of 1..4 = %v", m)
	}
}

// TestBudget: the drain's CPU budget is computed from the three
// benchmarks' wall, own and broker figures, and left out without them.
func TestBudget(t *testing.T) {
	const in = `goos: linux
goarch: amd64
pkg: github.com/cityedge/cityedge/uplink
BenchmarkRawPahoMTLS-2 	   10000	     30000 ns/op	     16000 broker-cpu-ns/op	     30000 cpu-ns/op	   3333333 readings/s
BenchmarkRawPahoMTLSDrainPayload-2 	   10000	     45000 ns/op	     27000 broker-cpu-ns/op	     45000 cpu-ns/op	   2222222 readings/s
pkg: github.com/cityedge/cityedge/cmd/cityedge
BenchmarkDrainMTLS-2   	   10000	    160000 ns/op	     40000 broker-cpu-ns/op	    224000 cpu-ns/op	    625000 readings/s
`
	out := render(in)
	// Drain: (224,000 + 40,000) / 160,000 = 1.65 cores. Target: 60,000 ns
	// a message, 99,000 ns of CPU at 1.65 cores; publishing takes 45,000 +
	// 27,000 = 72,000; 27,000 is left; the drain spends 264,000 - 72,000.
	wantAll(t, out,
		"## The drain's CPU budget",
		"| linux/amd64 | `BenchmarkDrainMTLS` | 160,000 | 224,000 | 40,000 | 1.65 |",
		"| linux/amd64 | `BenchmarkRawPahoMTLSDrainPayload` | 45,000 | 45,000 | 27,000 | 1.60 |",
		"a message may take 60,000 ns",
		"that is 99,000 ns of CPU",
		"takes 72,000 of it",
		"leaves **27,000 ns**",
		"spends **192,000 ns**",
		"| a drain that costs nothing (raw paho publishing the drain's own messages) vs raw paho |",
		"| **0.67** | — ",
	)
	if out := render(sample); strings.Contains(out, "CPU budget") {
		t.Errorf("a budget without the CPU figures:\n%s", out)
	}
}

// wantAll fails t for each of wants that out does not contain.
func wantAll(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// render is BENCHMARKS.md as make bench would write it from go test's
// output in, at a fixed time.
func render(in string) string { return renderRun(parse(strings.NewReader(in))) }

// renderRun is render for a parsed run.
func renderRun(r *run) string {
	var b strings.Builder
	write(&b, []*run{r}, "make bench", time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), "")
	return b.String()
}
