package main

import (
	"fmt"
	"strings"
)

// target is a figure the project holds to an absolute bound.
type target struct {
	what, bench, metric string
	atMost              bool // true: figure ≤ value; false: figure ≥ value
	value               float64
}

// The reconnect simulation's targets (issue "on time"; DECISIONS 12, 13):
// 10,000 gateways against a broker that completes 1,000 handshakes per
// second and refuses the rest, and the 200-gateway whole-cluster restart,
// where no second may see more than a tenth of the fleet.
var targets = []target{
	{"10,000 gateways after a broker restart (1,000 handshakes/s): last one back after (s)", "BenchmarkReconnectFleet", "reconnect_s", true, 30},
	{"10,000 gateways: attempts per gateway, 99th percentile", "BenchmarkReconnectFleet", "p99_attempts", true, 6},
	{"10,000 gateways: attempts in the busiest second after the first", "BenchmarkReconnectFleet", "busiest_second", true, 2000},
	{"200 gateways, whole-cluster restart after 90 s down: attempts in the busiest second (worst of 20 fleets)", "BenchmarkReconnectFleet", "cluster_busiest_second", true, 20},
	// RabbitMQ 3.10's restart as the fleet test meets it: CONNECTs held 5 s
	// until the cluster is ready 140 s after the stop. The sessions it then
	// answers at once (held_answered_second) are shown in the tuning table.
	{"200 gateways, whole-cluster restart with CONNECTs held 5 s until ready (RabbitMQ 3.10): sessions whose CONNECT arrived in the busiest second (worst of 20 fleets)", "BenchmarkReconnectFleet", "held_arrived_second", true, 20},
}

func writeTargets(w *strings.Builder, runs []*run) {
	var rows []string
	for _, r := range runs {
		for _, tg := range targets {
			res := find(r, tg.bench)
			v, ok := 0.0, false
			if res != nil {
				v, ok = res.metrics[tg.metric]
			}
			if !ok {
				continue
			}
			op, met := "≥", v >= tg.value
			if tg.atMost {
				op, met = "≤", v <= tg.value
			}
			verdict := "met"
			if !met {
				verdict = "**not met**"
			}
			rows = append(rows, fmt.Sprintf("| %s | `%s` (%s) | **%s** | %s %s %s |", tg.what, tg.bench, tg.metric, human(v), op, human(tg.value), verdict))
		}
	}
	if len(rows) == 0 {
		return
	}
	w.WriteString("## Targets\n\n| what | benchmark | figure | target |\n|---|---|---|---|\n")
	for _, row := range rows {
		w.WriteString(row + "\n")
	}
	w.WriteString("\n")
}

// writeTuning writes the tuning table: the settings that trade one figure
// for another, with what the benchmarks of this run measured about them.
func writeTuning(w *strings.Builder, runs []*run) {
	fig := func(bench, metric, unit string) string {
		for _, r := range runs {
			if res := find(r, bench); res != nil {
				if v, ok := res.metrics[metric]; ok {
					return human(v) + unit
				}
			}
		}
		return "(not in this run)"
	}
	w.WriteString("## Tuning table\n\n" +
		"What each timing setting trades, and what this run measured at the defaults. README's tuning table is this section.\n\n" +
		"| key | default | what it trades | measured at the default |\n|---|---|---|---|\n")
	fmt.Fprintf(w, "| `uplink.reconnect_spread` | `30s` | the window over which reconnects are spread once quick retries would herd "+
		"(a live broker refuses or times out the handshake, or it has been unreachable for more than 10 s); each further "+
		"failure doubles it, up to 2 min. A blip is retried about every second whatever it is. Wider: fewer attempts per "+
		"second at a struggling broker, later return | 10,000 gateways vs 1,000 handshakes/s: all back after %s, p99 %s "+
		"attempts each, busiest second %s attempts; 200-gateway cluster restart: busiest second %s attempts, last one back "+
		"%s after the broker; the same against a broker that holds CONNECTs 5 s until it is ready (RabbitMQ 3.10): "+
		"busiest second %s sessions by CONNECT arrival, %s answered in one second when it became ready "+
		"(`BenchmarkReconnectFleet`) |\n",
		fig("BenchmarkReconnectFleet", "reconnect_s", " s"), fig("BenchmarkReconnectFleet", "p99_attempts", ""),
		fig("BenchmarkReconnectFleet", "busiest_second", ""), fig("BenchmarkReconnectFleet", "cluster_busiest_second", ""),
		fig("BenchmarkReconnectFleet", "cluster_reconnect_s", " s"), fig("BenchmarkReconnectFleet", "held_arrived_second", ""),
		fig("BenchmarkReconnectFleet", "held_answered_second", ""))
	fmt.Fprintf(w, "| `buffer.commit_interval` | `2s` | fsyncs (flash wear) against the readings a power cut can lose "+
		"(those not yet committed). Sampling never waits for it: a 100 ms sensor delivers 10 sample times/s with 250 ms "+
		"and with 2 s (`TestSamplingRhythm`) | bytes written per reading at 50 readings/s with the broker up: %s; with "+
		"250 ms: %s (`BenchmarkAgentDiskWrites`); with the broker down, every reading stored: %s "+
		"(`BenchmarkAgentDiskWritesOffline`) |\n",
		fig("BenchmarkAgentDiskWrites/commit_interval=default", "disk-B/reading", " B"),
		fig("BenchmarkAgentDiskWrites/commit_interval=250ms", "disk-B/reading", " B"),
		fig("BenchmarkAgentDiskWritesOffline", "disk-B/reading", " B"))
	w.WriteString("| `uplink.batch_wait` | `1s` | fewer, larger messages against the latency of environmental readings; " +
		"occupancy changes never wait for it | — |\n\n")
}
