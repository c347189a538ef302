package main

import (
	"fmt"
	"strings"
)

// medium is a gateway's storage and the writes it takes before it wears
// out: capacity × program/erase cycles ÷ write amplification (the card
// writes more than it is asked to: pages are larger than our writes, and
// its wear levelling moves data). The figures are assumptions, stated in
// the document: the low end of what vendors and surveys give per cell type.
type medium struct {
	name         string
	capacity     float64 // bytes
	cycles       float64 // program/erase cycles of a cell
	amplify      float64 // write amplification inside the card
	cyclesSource string
}

var media = []medium{
	{"16 GB consumer microSD (TLC)", 16e9, 500, 4, "surveys of flash types give TLC about 3,000 program/erase cycles and some chips as few as 300; we take 500 and a write amplification of 4"},
	{"8 GB industrial eMMC (MLC)", 8e9, 3000, 2, "the same surveys give MLC 3,000 to 10,000 cycles; we take 3,000 and a write amplification of 2, since an industrial eMMC's controller is made for small writes"},
}

// flashCases are the agent's two regimes: everyday (the broker takes every
// reading, almost nothing is written) and an outage (every reading stored).
var flashCases = []struct{ what, bench string }{
	{"broker up (everyday)", "BenchmarkAgentDiskWrites/commit_interval=default"},
	{"broker down (an outage), every reading stored", "BenchmarkAgentDiskWritesOffline"},
}

// writeFlash turns the measured bytes per second at 50 readings/s into
// years of life for each medium, were the gateway in that regime all along.
func writeFlash(w *strings.Builder, runs []*run) {
	var rows []string
	for _, c := range flashCases {
		var res *result
		for _, r := range runs {
			if res = find(r, c.bench); res != nil {
				break
			}
		}
		if res == nil || res.metrics["disk-B/s"] <= 0 {
			continue
		}
		perDay := res.metrics["disk-B/s"] * 86400
		cells := []string{c.what, fmt.Sprintf("`%s`", c.bench), human(res.metrics["disk-B/reading"]), human(perDay / 1e6)}
		for _, m := range media {
			cells = append(cells, years(m.capacity*m.cycles/m.amplify/perDay/365))
		}
		rows = append(rows, "| "+strings.Join(cells, " | ")+" |")
	}
	if len(rows) == 0 {
		return
	}
	w.WriteString("## Flash lifetime\n\n" +
		"What the measured writes at 50 readings/s (the default configuration, counted at the device, journal\n" +
		"included) imply, were the gateway in one regime all along. A medium lasts capacity × program/erase cycles ÷\n" +
		"write amplification:\n\n")
	for _, m := range media {
		fmt.Fprintf(w, "- %s: %s TB written (%s).\n", m.name, human(m.capacity*m.cycles/m.amplify/1e12), m.cyclesSource)
	}
	w.WriteString("\n| regime | benchmark | B written per reading | MB written per day |")
	for _, m := range media {
		w.WriteString(" " + m.name + " |")
	}
	w.WriteString("\n|---|---|---|---|" + strings.Repeat("---|", len(media)) + "\n")
	for _, row := range rows {
		w.WriteString(row + "\n")
	}
	w.WriteString("\n")
}

// years prints a lifetime; beyond a century the figure means only that
// something else wears out first.
func years(y float64) string {
	if y >= 100 {
		return "more than 100 years"
	}
	return human(y) + " years"
}
