// Command benchdoc turns the output of `go test -bench` into
// docs/BENCHMARKS.md: every figure with the command that produced it, the
// machine, the date, and its ratio to the raw baseline where one exists.
//
// It is the one place performance figures come from: README links to the
// file it writes instead of restating numbers that would drift.
//
// Usage: benchdoc -in bench.out [-in bench-arm.out ...] -out docs/BENCHMARKS.md -cmd "make bench"
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark line: its name (without the -GOMAXPROCS suffix),
// the package and platform it ran on, and each reported metric.
type result struct {
	name, pkg, platform string
	iterations          int64
	metrics             map[string]float64
	order               []string
	runs                int // lines merged into this one (go test -count): each figure is their median
}

// run is one input file: the platform lines go test printed and its results.
type run struct {
	label   string
	cpu     string
	results []*result
}

// ratio names a benchmark whose figure is meaningful against a raw baseline
// measured the same way, and the target the project holds it to.
type ratio struct {
	what, bench, base, metric string
	target                    float64 // minimum ratio; 0 means "reported only"
}

var ratios = []ratio{
	{"durable append vs one raw bbolt Update per 100", "BenchmarkAppend100", "BenchmarkRawBolt100", "readings/s", 0.8},
	{"drain bbolt → SenML → mTLS MQTT vs raw paho", budgetDrain, budgetRaw, "readings/s", drainTarget},
	// The drain's ceiling: a drain that cost nothing would still publish
	// its own messages, which are larger than the raw benchmark's.
	{"a drain that costs nothing (raw paho publishing the drain's own messages) vs raw paho", budgetPayload, budgetRaw, "readings/s", 0},
	// The same drain against raw paho publishing the drain's own messages
	// (26 KB, where BenchmarkRawPahoMTLS's take 14 KB): its cost per byte.
	{"drain vs raw paho publishing the drain's own messages (per byte)", budgetDrain, budgetPayload, "readings/s", 0},
	{"uplink client vs raw paho, same window", "BenchmarkUplinkMTLS", budgetRaw, "readings/s", 0},
	// DECISIONS 17: the second output, against the first.
	{"Sentilo client drain vs the MQTT drain (the stand-in runs in the benchmark process: its JSON decoding and GC take about two thirds of the CPU, the client a tenth)", "BenchmarkSentiloDrain", budgetDrain, "readings/s", 0.5},
}

func main() {
	var ins multi
	flag.Var(&ins, "in", "go test -bench output (repeatable; label with LABEL=PATH)")
	out := flag.String("out", "docs/BENCHMARKS.md", "file to write")
	cmd := flag.String("cmd", "make bench", "the command that produced the input, for the reader")
	flag.Parse()
	if len(ins) == 0 {
		fmt.Fprintln(os.Stderr, "benchdoc: at least one -in is needed")
		os.Exit(2)
	}
	var runs []*run
	for _, in := range ins {
		label, path := "", in
		if i := strings.Index(in, "="); i > 0 {
			label, path = in[:i], in[i+1:]
		}
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchdoc: %v\n", err)
			os.Exit(1)
		}
		r := parse(f)
		f.Close()
		r.label = label
		runs = append(runs, r)
	}
	var b strings.Builder
	write(&b, runs, *cmd, time.Now().UTC(), loadNote())
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "benchdoc: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("benchdoc: wrote %s (%d benchmarks)\n", *out, count(runs))
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func count(runs []*run) (n int) {
	for _, r := range runs {
		n += len(r.results)
	}
	return n
}

// parse reads go test's benchmark output. Lines it does not understand
// (logs, PASS, ok) are ignored.
func parse(in io.Reader) *run {
	r := &run{}
	var pkg, goos, goarch string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "goos: "):
			goos = strings.TrimPrefix(line, "goos: ")
		case strings.HasPrefix(line, "goarch: "):
			goarch = strings.TrimPrefix(line, "goarch: ")
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case strings.HasPrefix(line, "cpu: "):
			r.cpu = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "Benchmark"):
			if res := parseLine(line); res != nil {
				res.pkg, res.platform = pkg, goos+"/"+goarch
				r.results = append(r.results, res)
			}
		}
	}
	r.results = medians(r.results)
	return r
}

// medians merges the lines of a benchmark that ran several times (go test
// -count N) into one whose every figure is the median of the runs: an
// fsync-bound benchmark moves by tens of percent between runs on a shared
// machine, and one unlucky run should not decide a ratio's verdict.
func medians(results []*result) []*result {
	type key struct{ name, pkg, platform string }
	groups := map[key][]*result{}
	var out []*result
	for _, res := range results {
		k := key{res.name, res.pkg, res.platform}
		if len(groups[k]) == 0 {
			out = append(out, res)
		}
		groups[k] = append(groups[k], res)
	}
	for i, first := range out {
		g := groups[key{first.name, first.pkg, first.platform}]
		if len(g) == 1 {
			continue
		}
		m := &result{name: first.name, pkg: first.pkg, platform: first.platform, metrics: map[string]float64{},
			order: first.order, runs: len(g)}
		its := make([]float64, len(g))
		for j, res := range g {
			its[j] = float64(res.iterations)
		}
		m.iterations = int64(median(its))
		for _, name := range first.order {
			var vs []float64
			for _, res := range g {
				if v, ok := res.metrics[name]; ok {
					vs = append(vs, v)
				}
			}
			m.metrics[name] = median(vs)
		}
		out[i] = m
	}
	return out
}

// median of vs (the mean of the middle two for an even count).
func median(vs []float64) float64 {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// parseLine reads "BenchmarkX-2   10   123 ns/op   4.5 readings/s".
func parseLine(line string) *result {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return nil
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return nil
	}
	name := f[0]
	if i := strings.LastIndex(name, "-"); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	res := &result{name: name, iterations: n, metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil
		}
		res.metrics[f[i+1]] = v
		res.order = append(res.order, f[i+1])
	}
	return res
}

func write(w *strings.Builder, runs []*run, cmd string, now time.Time, note string) {
	fmt.Fprintf(w, "# Benchmarks\n\nWritten by `%s` on %s. Do not edit by hand: run the command again.\n\n", cmd, now.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s; %d cores; %s; %s.\n", cpuOf(runs), runtime.NumCPU(), kernel(), runtime.Version())
	fmt.Fprintf(w, "Absolute figures on a shared 2-core machine vary by tens of percent between runs; the ratios\n"+
		"compare two benchmarks of the same run and hold better. Under qemu-user (ARM sections) only ratios mean anything.\n")
	if note != "" {
		w.WriteString(note + "\n")
	}
	w.WriteString("\n")
	writeRatios(w, runs)
	writeBudget(w, runs)
	writeTargets(w, runs)
	writeFlash(w, runs)
	writeTuning(w, runs)
	for _, r := range runs {
		title := "Figures"
		if r.label != "" {
			title = "Figures: " + r.label
		}
		fmt.Fprintf(w, "## %s\n\n", title)
		pkgs := map[string][]*result{}
		var names []string
		for _, res := range r.results {
			key := res.pkg + " (" + res.platform + ")"
			if _, ok := pkgs[key]; !ok {
				names = append(names, key)
			}
			pkgs[key] = append(pkgs[key], res)
		}
		sort.Strings(names)
		for _, p := range names {
			fmt.Fprintf(w, "### %s\n\n| benchmark | runs | figures |\n|---|---|---|\n", p)
			for _, res := range pkgs[p] {
				var fs []string
				for _, m := range res.order {
					fs = append(fs, human(res.metrics[m])+" "+m)
				}
				its := fmt.Sprint(res.iterations)
				if res.runs > 1 {
					its += fmt.Sprintf(" (median of %d runs)", res.runs)
				}
				fmt.Fprintf(w, "| `%s` | %s | %s |\n", res.name, its, strings.Join(fs, ", "))
			}
			w.WriteString("\n")
		}
	}
}

func writeRatios(w *strings.Builder, runs []*run) {
	var rows []string
	for _, r := range runs {
		for _, q := range ratios {
			a, b := find(r, q.bench), find(r, q.base)
			if a == nil || b == nil || b.metrics[q.metric] == 0 {
				continue
			}
			v := a.metrics[q.metric] / b.metrics[q.metric]
			target, verdict := "—", ""
			if q.target > 0 {
				target = fmt.Sprintf("≥ %.2g", q.target)
				verdict = "met"
				if v < q.target {
					verdict = "**not met**"
				}
			}
			label := a.platform
			if r.label != "" {
				label = r.label
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | `%s` / `%s` (%s) | %s / %s | **%.2f** | %s %s |",
				label, q.what, q.bench, q.base, q.metric, human(a.metrics[q.metric]), human(b.metrics[q.metric]), v, target, verdict))
		}
	}
	if len(rows) == 0 {
		return
	}
	w.WriteString("## Ratios to the raw baselines\n\n| platform | what | benchmarks | figures | ratio | target |\n|---|---|---|---|---|---|\n")
	for _, row := range rows {
		w.WriteString(row + "\n")
	}
	w.WriteString("\n")
}

func find(r *run, name string) *result {
	for _, res := range r.results {
		if res.name == name {
			return res
		}
	}
	return nil
}

// human prints a figure at a precision a reader can use: three significant
// digits, with thousands separated.
func human(v float64) string {
	switch {
	case v >= 1000:
		s := strconv.FormatFloat(v, 'f', 0, 64)
		var out []byte
		for i, c := range []byte(s) {
			if i > 0 && (len(s)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, c)
		}
		return string(out)
	case v == 0:
		return "0"
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func cpuOf(runs []*run) string {
	for _, r := range runs {
		if r.cpu != "" && r.label == "" {
			return r.cpu
		}
	}
	return "unknown CPU"
}

// loadNote says how busy the machine was at the end of the run (the load
// averages of /proc/loadavg), and warns when other work shared it.
func loadNote() string {
	data, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if err != nil || len(f) < 3 {
		return ""
	}
	avg := fmt.Sprintf("load average %s, %s, %s (1, 5, 15 min) on %d cores", f[0], f[1], f[2], runtime.NumCPU())
	if five, err := strconv.ParseFloat(f[1], 64); err == nil && five > float64(runtime.NumCPU()) {
		return "**Noisy run:** other work shared the machine (" + avg + " when this was written), so absolute " +
			"figures are low and scattered and even ratios move between runs; `cpu-ns/op`, a benchmark process's own " +
			"CPU time per op, moves least."
	}
	return "When this was written: " + avg + "."
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return runtime.GOOS
	}
	return strings.TrimSpace(string(out))
}
