package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testproc"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
)

// benchReading is a realistic stored reading: a BME280's three values, as
// the sampler encodes it.
func benchReading(i int) []byte {
	data, err := senml.AppendReading(nil, drivers.Reading{Sensor: "air-quality-17", Time: time.UnixMilli(1764064800000 + int64(i)*100),
		Values: []drivers.Value{
			{Quantity: "temperature", Unit: "Cel", Num: 21.53 + float64(i%100)/100},
			{Quantity: "humidity", Unit: "%RH", Num: 40.125},
			{Quantity: "pressure", Unit: "Pa", Num: 101325.25},
		}})
	if err != nil {
		panic(err)
	}
	return data
}

// fillQueue appends n readings, several appends at a time: with a commit
// interval each append waits for its group, and one after the other they
// took 50 s for BenchmarkDrainMTLS's 200,000 readings.
func fillQueue(b testing.TB, q *buffer.Queue, n int) {
	b.Helper()
	var wg sync.WaitGroup
	slots := make(chan struct{}, 32)
	for i := 0; i < n; i += 1000 {
		recs := make([]buffer.Record, min(1000, n-i))
		for j := range recs {
			recs[j] = buffer.Record{Key: "air-quality-17", Data: benchReading(i + j)}
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, err := q.Append(context.Background(), recs); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// countingSource wraps the agent's source to signal when everything is acked.
type countingSource struct {
	uplink.Source
	acked int
	bytes int64 // payload bytes acknowledged
	want  int
	done  chan struct{}
}

func (c *countingSource) Acked(b uplink.Batch) error {
	c.bytes += int64(len(b.Payload)) // before Acked: the payload's buffer is reused after it
	err := c.Source.Acked(b)
	c.acked += len(b.Seqs)
	if c.acked >= c.want {
		select {
		case c.done <- struct{}{}:
		default:
		}
	}
	return err
}

// BenchmarkDrainMTLS moves buffered readings to mosquitto the agent's way:
// bbolt read → SenML pack → mutual-TLS QoS 1 publish with the default batch
// (100) and in-flight window (16) → PUBACK → delete. One op is one message of
// 100 readings; compare with uplink's BenchmarkRawPahoMTLS, the same window
// publishing prebuilt messages from memory. MB/s counts the payload bytes
// (a BME280 reading is three SenML records, about 260 bytes, where the raw
// benchmark's reading is one of 141) and cpu-ns/op this process's CPU time
// per message, the figure that a shared machine's load disturbs least.
func BenchmarkDrainMTLS(b *testing.B) {
	br := testbroker.Start(b, testbroker.Options{})
	// The buffer logs nothing here: a log line written while `go test`
	// prints the benchmark's name splits its result line, and make bench
	// then loses the figure.
	log := slog.New(slog.DiscardHandler)
	q, err := buffer.Open(filepath.Join(b.TempDir(), "buffer.db"), buffer.Options{MaxBytes: 1 << 30, CommitInterval: config.DefaultCommitInterval, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	n := b.N * uplink.DefaultBatchMax
	fillQueue(b, q, n)
	src := &countingSource{Source: agent.NewSource(q, "gw-bench", uplink.DefaultBatchMax, time.Second, log), want: n, done: make(chan struct{}, 1)}
	tc := br.ClientTLS(b)
	up, err := uplink.New(uplink.Config{Brokers: []string{br.URL}, ClientID: "gw-bench", TopicPrefix: "bench",
		TLSConfig: func() (*tls.Config, error) { return tc, nil }, Window: uplink.DefaultWindow, Logger: log}, src)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	brokerCPU := br.CPUPerOp(b)
	cpu0 := testproc.OwnCPU()
	b.ResetTimer()
	go up.Run(ctx)
	select {
	case <-src.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("drained %d of %d readings", src.acked, n)
	}
	b.StopTimer()
	b.ReportMetric(float64(testproc.OwnCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	brokerCPU()
	b.ReportMetric(float64(src.bytes)/1e6/b.Elapsed().Seconds(), "MB/s")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
	// Acks are applied by the buffer's next commit.
	for deadline := time.Now().Add(5 * time.Second); q.Stats().Count != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d readings left in the buffer", q.Stats().Count)
		}
	}
}

// BenchmarkAgentDrain1M measures the real agent binary draining a backlog of
// 1,000,000 readings to mosquitto: the peak of its anonymous memory (RssAnon:
// heap and stacks; the bbolt map shows up as RssFile) and of its total RSS,
// the buffer file's size per queued reading, the bytes the agent wrote to
// disk per drained reading (deletes are writes too), and the drain rate.
// Run it with `make bench` (it takes about a minute).
func BenchmarkAgentDrain1M(b *testing.B) {
	const backlog = 1_000_000
	for range b.N {
		br := testbroker.Start(b, testbroker.Options{})
		s := newSetupB(b, br)
		q, err := buffer.Open(filepath.Join(s.stateDir, config.BufferFile), buffer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		fillQueue(b, q, backlog)
		st := q.Stats()
		q.Close()
		b.ReportMetric(float64(st.FileBytes)/backlog, "file-B/reading")
		b.ReportMetric(float64(len(benchReading(0))), "stored-B/reading")

		cmd := exec.Command(agentBinary(b), "--config", s.config, "--simulate")
		// CITYEDGE_BENCH_AGENT_ENV passes settings to the agent alone, e.g.
		// "GODEBUG=gctrace=1" or "GOMEMLIMIT=16MiB".
		cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("CITYEDGE_BENCH_AGENT_ENV"))...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cfg, err := config.Load(s.config)
		if err != nil {
			b.Fatal(err)
		}
		var peakAnon, peakRSS, written int64
		drained := false
		quiet := slog.New(slog.DiscardHandler)
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline) && !drained; time.Sleep(50 * time.Millisecond) {
			anon, rss := procMemory(cmd.Process.Pid)
			peakAnon, peakRSS = max(peakAnon, anon), max(peakRSS, rss)
			written = max(written, procWritten(cmd.Process.Pid))
			// Drained means acknowledged and deleted: ask the agent itself.
			if live, _ := agent.Query(context.Background(), cfg, quiet); live != nil && live.Backlog < 100 && live.Uplink.Acked > 0 {
				drained = true
			}
		}
		took := time.Since(start)
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if f := os.Getenv("CITYEDGE_BENCH_AGENT_LOG"); f != "" {
			os.WriteFile(f, []byte(stderr.String()), 0o644)
		}
		if !drained {
			b.Fatalf("backlog not drained in time:\n%s", tail(stderr.String(), 2000))
		}
		b.ReportMetric(float64(peakAnon)/(1<<20), "RssAnon-MiB")
		b.ReportMetric(float64(peakRSS)/(1<<20), "RSS-MiB")
		b.ReportMetric(backlog/took.Seconds(), "readings/s")
		b.ReportMetric(float64(written)/backlog, "drain-written-B/reading")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// newSetupB is newSetup for benchmarks: one slow sensor, so the backlog is
// what moves.
func newSetupB(b *testing.B, br *testbroker.Broker) *testSetup {
	dir := b.TempDir()
	s := &testSetup{dir: dir, config: filepath.Join(dir, "cityedge.toml"), stateDir: filepath.Join(dir, "state"), broker: br}
	text := fmt.Sprintf(`[agent]
id = "gw-bench"
state_dir = %q
[uplink]
brokers = [%q]
ca_file = %q
cert_file = %q
key_file = %q
`+testClockRule+`
[[sensors]]
name = "air-1"
driver = "bme280"
bus = "1"
interval = "10s"
`, s.stateDir, br.URL, br.PKI.CA.CertFile, br.PKI.Client.CertFile, br.PKI.Client.KeyFile)
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(s.config, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	return s
}

// procMemory reads RssAnon and VmRSS of pid, in bytes.
func procMemory(pid int) (anon, rss int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "VmRSS":
			rss = kb << 10
		}
	}
	return anon, rss
}

// procWritten reads the bytes pid caused to be written to storage
// (write_bytes in /proc/<pid>/io); 0 if unknown.
func procWritten(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
