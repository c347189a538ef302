package main

import (
	"context"
	"fmt"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/uplink/senml"
)

var bufferedRE = regexp.MustCompile(`msg="reading buffered" sensor=(\S+) seq=(\d+)`)

// durableSeqs returns the seqs the agent reported durable in its log.
func durableSeqs(log string) map[uint64]bool {
	out := map[uint64]bool{}
	for _, m := range bufferedRE.FindAllStringSubmatch(log, -1) {
		if n, err := strconv.ParseUint(m[2], 10, 64); err == nil {
			out[n] = true
		}
	}
	return out
}

// skippedRE matches the buffer's report of the sequence numbers a killed run
// had reserved and the next run skips (buffer: numbers a receiver may have
// seen are never handed out again).
var skippedRE = regexp.MustCompile(`skipping the sequence numbers it had reserved.*?from=(\d+) to=(\d+)`)

// skippedSeqs marks the numbers the buffer said it skipped.
func skippedSeqs(log string, into map[uint64]bool) {
	for _, m := range skippedRE.FindAllStringSubmatch(log, -1) {
		from, err1 := strconv.ParseUint(m[1], 10, 64)
		to, err2 := strconv.ParseUint(m[2], 10, 64)
		if err1 != nil || err2 != nil || to < from || to-from > 1<<16 {
			continue
		}
		for s := from; s <= to; s++ {
			into[s] = true
		}
	}
}

func setLogLevel(t *testing.T, config, level string) {
	t.Helper()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "[agent]\n", "[agent]\nlog_level = \""+level+"\"\n", 1))
	if err := os.WriteFile(config, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCrashLoop starts the real binary with fast simulated sensors and a real
// mosquitto, SIGKILLs it at random moments 30 times (mid-commit,
// mid-publish), restarts it, then lets it drain. Every reading the agent
// reported durable must be delivered; repeats are counted and must stay
// within the in-flight window of each crash.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop takes about a minute")
	}
	const kills = 30
	b := testbroker.Start(t, testbroker.Options{})
	s := newSetup(t, b, b.PKI.Client, `drain_order = "live-first"`)
	setLogLevel(t, s.config, "debug")
	col := collect(t, b, "cityedge/test/gw-test")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	durable := map[uint64]bool{}
	skipped := map[uint64]bool{} // reserved by a killed run, never handed out after it
	for i := 0; i < kills; i++ {
		p := startAgent(t, s.config, "--simulate")
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
		for seq := range durableSeqs(p.stderr.String()) {
			durable[seq] = true
		}
		skippedSeqs(p.stderr.String(), skipped)
	}
	killedAt := len(col.snapshot())
	p := startAgent(t, s.config, "--simulate")
	waitFor(t, "the last run delivering", 30*time.Second, func() bool { return len(col.snapshot()) > killedAt+30 })
	waitFor(t, "every durable reading delivered", 60*time.Second, func() bool {
		got := map[uint64]bool{}
		for _, r := range col.snapshot() {
			got[r.seq] = true
		}
		for seq := range durable {
			if !got[seq] {
				return false
			}
		}
		return true
	})
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("final run exit code %d", code)
	}
	recs := col.snapshot()
	left := remaining(t, s.stateDir)
	skippedSeqs(p.stderr.String(), skipped)
	for seq := range skipped {
		if !durable[seq] {
			left[seq] = true // a gap the agent logged: unused, or sent and never written
		}
	}
	distinct, repeats := checkComplete(t, recs, left)
	// What a kill can make the agent send again follows from the design:
	// readings published and not yet acknowledged (at most uplink.window
	// messages of at most uplink.batch_max readings), and readings
	// acknowledged whose delete was not yet committed (acks are committed
	// within buffer.commit_interval; here 50 ms of ~20 readings/s of live
	// traffic, far less than the window). Each reading is one record per
	// value. The bound is computed from the configuration the test ran.
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	perReading := 0
	perSeq := map[uint64]map[string]bool{}
	for _, r := range recs {
		if perSeq[r.seq] == nil {
			perSeq[r.seq] = map[string]bool{}
		}
		perSeq[r.seq][r.name] = true
		perReading = max(perReading, len(perSeq[r.seq]))
	}
	perKill := cfg.Uplink.Window * cfg.Uplink.BatchMax * perReading
	if repeats > kills*perKill {
		t.Errorf("%d repeated records, more than %d kills × window %d × batch_max %d × %d records per reading = %d",
			repeats, kills, cfg.Uplink.Window, cfg.Uplink.BatchMax, perReading, kills*perKill)
	}
	if len(durable) < kills {
		t.Errorf("only %d readings reported durable over %d runs: the test proves little", len(durable), kills)
	}
	t.Logf("crash loop: %d SIGKILLs, %d readings reported durable, all delivered; %d distinct readings received "+
		"(%d records before the last start), %d repeated records (at-least-once), %d still buffered at the end",
		kills, len(durable), distinct, killedAt, repeats, len(left))
}

// checkComplete proves that every seq between the first and last one seen
// was delivered or is still buffered (nothing deleted without a PUBACK), and
// counts distinct readings and repeated records.
func checkComplete(t *testing.T, recs []received, left map[uint64]bool) (distinct, repeats int) {
	t.Helper()
	type key struct {
		name string
		seq  uint64
	}
	seen := map[key]bool{}
	seqs := map[uint64]bool{}
	for _, r := range recs {
		k := key{r.name, r.seq}
		if seen[k] {
			repeats++
			continue
		}
		seen[k] = true
		seqs[r.seq] = true
	}
	lo, hi := uint64(0), uint64(0)
	for s := range seqs {
		if lo == 0 || s < lo {
			lo = s
		}
		hi = max(hi, s)
	}
	missing := 0
	for s := lo; s <= hi && lo != 0; s++ {
		if !seqs[s] && !left[s] {
			missing++
			if missing <= 5 {
				t.Errorf("seq %d was neither delivered nor buffered", s)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d readings lost", missing)
	}
	return len(seqs), repeats
}

// TestOutageBacklog: after a long outage (a backlog of 100,000 readings
// already in the buffer, and the broker still down when the agent starts),
// everything is delivered, the back-fill in seq order, and live readings are
// not starved: they keep arriving within seconds while the backlog drains.
func TestOutageBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 100,000 readings")
	}
	const backlog = 100_000
	b := testbroker.Start(t, testbroker.Options{})
	s := newSetup(t, b, b.PKI.Client, `drain_order = "live-first"`)
	// The outage: readings from an hour ago, written as the agent would have.
	q, err := buffer.Open(filepath.Join(s.stateDir, config.BufferFile), buffer.Options{})
	if err != nil {
		os.MkdirAll(s.stateDir, 0o700)
		q, err = buffer.Open(filepath.Join(s.stateDir, config.BufferFile), buffer.Options{})
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now().Add(-time.Hour)
	var first, last uint64
	for i := 0; i < backlog; i += 1000 {
		recs := make([]buffer.Record, 1000)
		for j := range recs {
			data, err := senml.AppendReading(nil, drivers.Reading{Sensor: "air-1", Time: start.Add(time.Duration(i+j) * 36 * time.Millisecond),
				Values: []drivers.Value{{Quantity: "temperature", Unit: "Cel", Num: 20}, {Quantity: "humidity", Unit: "%RH", Num: 50}}})
			if err != nil {
				t.Fatal(err)
			}
			recs[j] = buffer.Record{Key: "air-1", Data: data}
		}
		seq, err := q.Append(context.Background(), recs)
		if err != nil {
			t.Fatal(err)
		}
		if first == 0 {
			first = seq
		}
		last = seq + uint64(len(recs)) - 1
	}
	q.Close()

	col := collect(t, b, "cityedge/test/gw-test")
	b.Stop()
	p := startAgent(t, s.config, "--simulate")
	time.Sleep(3 * time.Second) // still offline: sampling goes on
	b.Restart()
	reconnected := time.Now()
	waitFor(t, "the backlog to drain", 90*time.Second, func() bool {
		n := 0
		seen := map[uint64]bool{}
		for _, r := range col.snapshot() {
			if r.seq >= first && r.seq <= last && !seen[r.seq] {
				seen[r.seq] = true
				n++
			}
		}
		return n == backlog
	})
	drained := time.Since(reconnected)
	time.Sleep(time.Second)
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	recs := col.snapshot()
	left := remaining(t, s.stateDir)
	distinct, repeats := checkComplete(t, recs, left)

	// The agent says where the session split live from backlog; per stream and
	// per sensor, first arrivals come in seq order, and live readings arrive
	// while the back-fill is still going.
	m := regexp.MustCompile(`msg="sending the backlog".* live_after_seq=(\d+)`).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatal("the agent did not log where the backlog ends")
	}
	split, _ := strconv.ParseUint(m[1], 10, 64)
	if split < last {
		t.Fatalf("live split at seq %d, inside the pre-filled backlog (..%d)", split, last)
	}
	type stream struct {
		name string
		live bool
	}
	lastSeq := map[stream]uint64{}
	seen := map[string]bool{}
	var lastBackfillAt time.Time
	for _, r := range recs {
		if r.seq <= split {
			lastBackfillAt = r.at
		}
	}
	liveDuringBackfill := 0
	var worstLiveLag time.Duration
	for _, r := range recs {
		k := r.name + "/" + strconv.FormatUint(r.seq, 10)
		if seen[k] {
			continue
		}
		seen[k] = true
		st := stream{r.name, r.seq > split}
		if r.seq < lastSeq[st] {
			t.Errorf("%s: seq %d arrived after %d in the %s stream", r.name, r.seq, lastSeq[st], map[bool]string{true: "live", false: "back-fill"}[st.live])
		}
		lastSeq[st] = r.seq
		if st.live && r.at.Before(lastBackfillAt) {
			liveDuringBackfill++
			worstLiveLag = max(worstLiveLag, r.at.Sub(time.UnixMilli(r.ms)))
		}
	}
	if liveDuringBackfill == 0 {
		t.Error("no live reading arrived while the backlog drained: live readings were starved")
	}
	t.Logf("outage: %d backlog readings drained in %v (%.0f readings/s) with %d live records arriving meanwhile "+
		"(worst live lag %v); %d distinct, %d repeats, %d left",
		backlog, drained.Round(time.Millisecond), backlog/drained.Seconds(), liveDuringBackfill,
		worstLiveLag.Round(time.Millisecond), distinct, repeats, len(left))
}

// TestBoundDropsVisible: with the broker away and a small max_bytes, the
// buffer drops the oldest readings, and the drop counter reaches the
// receiver in the readings stream as <id>/cityedge/dropped, equal to what
// the buffer counted.
func TestBoundDropsVisible(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a buffer")
	}
	b := testbroker.Start(t, testbroker.Options{})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "[agent]\nid = \"gw-test\"\nstate_dir = %q\n[buffer]\nmax_bytes = \"1MiB\"\ncommit_interval = \"50ms\"\n"+
		"[uplink]\nbrokers = [%q]\ntopic_prefix = \"cityedge/test/gw-test\"\nreconnect_spread = \"1s\"\nbatch_wait = \"200ms\"\n"+
		"ca_file = %q\ncert_file = %q\nkey_file = %q\n", state, b.URL, b.PKI.CA.CertFile, b.PKI.Client.CertFile, b.PKI.Client.KeyFile)
	cfg.WriteString(testClockRule)
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&cfg, "[[sensors]]\nname = \"air-%d\"\ndriver = \"bme280\"\nbus = \"%d\"\naddress = %#x\ninterval = \"100ms\"\n", i, i/2, 0x76+i%2)
	}
	path := filepath.Join(dir, "cityedge.toml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	col := collect(t, b, "cityedge/test/gw-test")
	b.Stop()
	p := startAgent(t, path, "--simulate")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	waitFor(t, "the buffer to drop readings", 60*time.Second, func() bool {
		live, _ := agent.Query(context.Background(), c, quiet)
		return live != nil && live.Dropped > 0
	})
	time.Sleep(6 * time.Second) // a drop report is taken every 5 s
	b.Restart()
	var reported float64
	waitFor(t, "the drop counter in the readings stream", 30*time.Second, func() bool {
		for _, r := range col.snapshot() {
			if r.name == "gw-test/cityedge/dropped" {
				reported = max(reported, r.v)
			}
		}
		return reported > 0
	})
	p.stop(t)
	q, err := buffer.Open(filepath.Join(state, config.BufferFile), buffer.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	q.Close()
	if reported > float64(st.DroppedTotal) || reported == 0 {
		t.Errorf("the stream reported %v dropped, the buffer counted %d", reported, st.DroppedTotal)
	}
	// Within one report the per-sensor counters add up to the total.
	totals, sums := map[uint64]float64{}, map[uint64]float64{}
	for _, r := range col.snapshot() {
		switch {
		case r.name == "gw-test/cityedge/dropped":
			totals[r.seq] = r.v
		case strings.HasPrefix(r.name, "gw-test/cityedge/dropped/"):
			sums[r.seq] += r.v
		}
	}
	for seq, total := range totals {
		if sums[seq] != total {
			t.Errorf("report seq %d: per-sensor drops add up to %v, total says %v", seq, sums[seq], total)
		}
	}
	if fi, err := os.Stat(filepath.Join(state, config.BufferFile)); err != nil || fi.Size() > 1<<20+64<<10 {
		t.Errorf("buffer file %v bytes, bound 1 MiB: %v", fi.Size(), err)
	}
	t.Logf("buffer dropped %d readings (by sensor %v); the readings stream reported %v", st.DroppedTotal, len(st.Dropped), reported)
}
