package main

import (
	"strings"
	"testing"
	"time"
)

const fleetSample = `pkg: github.com/cityedge/cityedge/uplink
BenchmarkReconnectFleet-2   	       1	  29608512 ns/op	       354.0 busiest_second	         21.00 cluster_busiest_second	       114.8 cluster_reconnect_s	         2.000 p99_attempts	        30.00 reconnect_s
pkg: github.com/cityedge/cityedge/cmd/cityedge
BenchmarkAgentDiskWrites/commit_interval=default-2         	       1	36110471056 ns/op	         0 commits/s	         2.686 disk-B/reading	       136.5 disk-B/s	         1.000 pages/commit	        50.83 readings/s
`

// TestTargetsAndTuning: the reconnect simulation's figures appear with
// their targets and verdicts, and in the tuning table.
func TestTargetsAndTuning(t *testing.T) {
	var b strings.Builder
	write(&b, []*run{parse(strings.NewReader(fleetSample))}, "make bench", time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), "")
	out := b.String()
	wantAll(t, out,
		"## Targets",
		"| `BenchmarkReconnectFleet` (reconnect_s) | **30** | ≤ 30 met |",
		"| `BenchmarkReconnectFleet` (p99_attempts) | **2** | ≤ 6 met |",
		"| `BenchmarkReconnectFleet` (busiest_second) | **354** | ≤ 2,000 met |",
		"| `BenchmarkReconnectFleet` (cluster_busiest_second) | **21** | ≤ 20 **not met** |",
		"## Tuning table",
		"all back after 30 s, p99 2 attempts each, busiest second 354 attempts",
		"| `buffer.commit_interval` | `2s` |",
		"bytes written per reading at 50 readings/s with the broker up: 2.69 B; with 250 ms: (not in this run)",
	)
}
