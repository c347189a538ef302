package main

import (
	"fmt"
	"strings"
)

// The drain benchmark and its raw baselines: the ratios name them, and
// their CPU figures show what the drain's ratio target leaves for the
// drain's own work.
const (
	budgetRaw     = "BenchmarkRawPahoMTLS"
	budgetPayload = "BenchmarkRawPahoMTLSDrainPayload"
	budgetDrain   = "BenchmarkDrainMTLS"
	drainTarget   = 0.5 // the drain ratio's target (see ratios)
)

// cpuFigures is one benchmark's time per message: wall, this process's CPU
// and mosquitto's CPU, in nanoseconds.
type cpuFigures struct{ wall, own, broker float64 }

func (f cpuFigures) busy() float64 { return (f.own + f.broker) / f.wall }

func cpuOfResult(res *result) (cpuFigures, bool) {
	if res == nil {
		return cpuFigures{}, false
	}
	f := cpuFigures{res.metrics["ns/op"], res.metrics["cpu-ns/op"], res.metrics["broker-cpu-ns/op"]}
	return f, f.wall > 0 && f.own > 0 && f.broker > 0
}

// writeBudget shows, for each run that has the three benchmarks with their
// CPU figures, the arithmetic behind the drain's ratio: mosquitto runs on
// the same cores, so a message can only go faster if the two processes
// spend less CPU on it. At the target a message may take twice raw paho's
// time; at the cores the drain keeps busy, that is so much CPU, of which
// publishing the drain's own messages from memory takes its share. What is
// left is all that reading, packing and deleting 100 readings may cost.
func writeBudget(w *strings.Builder, runs []*run) {
	var rows []string
	var notes []string
	for _, r := range runs {
		raw, okR := cpuOfResult(find(r, budgetRaw))
		pay, okP := cpuOfResult(find(r, budgetPayload))
		drain, okD := cpuOfResult(find(r, budgetDrain))
		if !okR || !okP || !okD {
			continue
		}
		label := find(r, budgetDrain).platform
		if r.label != "" {
			label = r.label
		}
		for _, b := range []struct {
			name string
			f    cpuFigures
		}{{budgetRaw, raw}, {budgetPayload, pay}, {budgetDrain, drain}} {
			rows = append(rows, fmt.Sprintf("| %s | `%s` | %s | %s | %s | %.2f |",
				label, b.name, human(b.f.wall), human(b.f.own), human(b.f.broker), b.f.busy()))
		}
		wall := raw.wall / drainTarget
		avail := wall * drain.busy()
		publish := pay.own + pay.broker
		left := avail - publish
		spent := drain.own + drain.broker - publish
		notes = append(notes, fmt.Sprintf("%s: at the target a message may take %s ns (raw paho's %s ÷ %.1f). "+
			"At the %.2f cores the drain keeps busy, that is %s ns of CPU; publishing the drain's own messages from memory "+
			"takes %s of it (`%s`, this process and the broker), which leaves **%s ns** for reading, packing and "+
			"deleting 100 readings. The drain spends **%s ns** on them (its CPU and the broker's beyond that baseline's).",
			label, human(wall), human(raw.wall), drainTarget, drain.busy(), human(avail), human(publish), budgetPayload,
			human(left), human(spent)))
	}
	if len(rows) == 0 {
		return
	}
	w.WriteString("## The drain's CPU budget\n\n" +
		"mosquitto runs on the same cores as the benchmark, so a message goes faster only if the two processes spend\n" +
		"less CPU on it. Per message of 100 readings (ns); cores busy is both processes' CPU over the wall time.\n\n" +
		"| platform | benchmark | wall | this process's CPU | broker's CPU | cores busy |\n|---|---|---|---|---|---|\n")
	for _, row := range rows {
		w.WriteString(row + "\n")
	}
	w.WriteString("\n")
	for _, n := range notes {
		w.WriteString(n + "\n\n")
	}
}
