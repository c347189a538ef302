package main

import (
	"strings"
	"testing"
)

const fleetSample = `pkg: github.com/cityedge/cityedge/uplink
BenchmarkReconnectFleet-2   	       1	  29608512 ns/op	       354.0 busiest_second	         21.00 cluster_busiest_second	       114.8 cluster_reconnect_s	         2.000 p99_attempts	        30.00 reconnect_s
pkg: github.com/cityedge/cityedge/cmd/cityedge
BenchmarkAgentDiskWrites/commit_interval=default-2         	       1	36110471056 ns/op	         0 commits/s	         2.686 disk-B/reading	       136.5 disk-B/s	         1.000 pages/commit	        50.83 readings/s
`

// TestTargetsAndTuning: the reconnect simulation's figures appear with
// their targets and verdicts, and in the tuning table.
func TestTargetsAndTuning(t *testing.T) {
	out := render(fleetSample)
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

// TestFlash: the bytes per second at the device become years of life for
// each medium, in both regimes, and the offline figure reaches the tuning
// table.
func TestFlash(t *testing.T) {
	const in = fleetSample + `BenchmarkAgentDiskWritesOffline-2         	       1	36110471056 ns/op	         0.5 commits/s	         300.0 disk-B/reading	       15000 disk-B/s	         3.000 pages/commit	        50.00 readings/s
`
	// 16e9 × 500 ÷ 4 = 2 TB; 8e9 × 3,000 ÷ 2 = 12 TB. Offline: 15,000 B/s
	// is 1,296 MB a day: 2e12 ÷ 1.296e9 ÷ 365 = 4.23 years, 12e12 ÷ … =
	// 25.4 years. Broker up: 136.5 B/s, 11.8 MB a day, centuries.
	wantAll(t, render(in),
		"## Flash lifetime",
		"- 16 GB consumer microSD (TLC): 2 TB written",
		"- 8 GB industrial eMMC (MLC): 12 TB written",
		"| broker up (everyday) | `BenchmarkAgentDiskWrites/commit_interval=default` | 2.69 | 11.8 | more than 100 years | more than 100 years |",
		"| broker down (an outage), every reading stored | `BenchmarkAgentDiskWritesOffline` | 300 | 1,296 | 4.23 years | 25.4 years |",
		"with the broker down, every reading stored: 300 B (`BenchmarkAgentDiskWritesOffline`)",
	)
	if out := render(sample); strings.Contains(out, "Flash lifetime") {
		t.Errorf("a lifetime without the disk figures:\n%s", out)
	}
}
