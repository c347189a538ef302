package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testlog"
)

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// agentBinary builds the real cityedge binary once per test run, as shipped:
// static, no race detector.
func agentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cityedge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		agentBin = filepath.Join(dir, "cityedge")
		cmd := exec.Command("go", "build", "-trimpath", "-o", agentBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

// testSetup is an agent configuration for a test broker, in a folder of
// its own.
type testSetup struct {
	dir      string
	config   string
	stateDir string
	broker   *testbroker.Broker
}

// newSetup writes a configuration for broker b with fast simulated sensors;
// extra is added to the [uplink] table.
func newSetup(t *testing.T, b *testbroker.Broker, client *devpki.Issued, extra string) *testSetup {
	t.Helper()
	dir := t.TempDir()
	s := &testSetup{dir: dir, config: filepath.Join(dir, "cityedge.toml"), stateDir: filepath.Join(dir, "state"), broker: b}
	if !strings.Contains(extra, "drain_order") {
		// checkDelivery's strict per-sensor arrival order holds for
		// oldest-first; live-first tests say so and check per stream.
		extra = "drain_order = \"oldest-first\"\n" + extra
	}
	text := fmt.Sprintf(`[agent]
id = "gw-test"
state_dir = %q

[buffer]
commit_interval = "50ms"

[uplink]
brokers = [%q]
topic_prefix = "cityedge/test/gw-test"
batch_max = 20
batch_wait = "200ms"
reconnect_spread = "1s"
ca_file = %q
cert_file = %q
key_file = %q
%s
`+testClockRule+`
[[sensors]]
name = "bay-1"
driver = "gpio-presence"
pin = "GPIO17"
interval = "300ms"

[[sensors]]
name = "air-1"
driver = "bme280"
bus = "1"
interval = "100ms"

[[sensors]]
name = "air-2"
driver = "bme280"
bus = "1"
address = 0x77
interval = "150ms"
`, s.stateDir, b.URL, b.PKI.CA.CertFile, client.CertFile, client.KeyFile, extra)
	if err := os.WriteFile(s.config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

type agentProc struct {
	cmd    *exec.Cmd
	stderr *testlog.Buffer
	done   chan error
}

func startAgent(t *testing.T, config string, args ...string) *agentProc {
	t.Helper()
	return startAgentCmd(t, exec.Command(agentBinary(t), append([]string{"--config", config}, args...)...))
}

func startAgentCmd(t *testing.T, cmd *exec.Cmd) *agentProc {
	t.Helper()
	p := &agentProc{stderr: &testlog.Buffer{}, done: make(chan error, 1), cmd: cmd}
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("agent log:\n%s", p.stderr.String())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code and how long the exit took.
func (p *agentProc) stop(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not exit after SIGTERM")
	}
	p.done <- nil // for the cleanup
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

// received is one SenML record as a receiver resolves it.
type received struct {
	name string
	seq  uint64
	ms   int64
	v    float64
	vb   *bool
	tq   string    // time quality: "", "corrected" or "unsynced"
	at   time.Time // when the subscriber got it
}

// collector resolves SenML packs from a subscription.
type collector struct {
	mu       sync.Mutex
	records  []received
	messages int
	statuses []map[string]any
}

func collect(t *testing.T, b *testbroker.Broker, prefix string) *collector {
	c := &collector{}
	ch := b.Subscribe(t, prefix+"/#")
	go func() {
		for m := range ch {
			c.add(t, m.Topic, m.Payload)
		}
	}()
	return c
}

func (c *collector) add(t *testing.T, topic string, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.HasSuffix(topic, "/status") {
		var st map[string]any
		if err := json.Unmarshal(payload, &st); err != nil {
			t.Errorf("status is not JSON: %v: %s", err, payload)
		}
		c.statuses = append(c.statuses, st)
		return
	}
	if strings.Contains(topic, "/diagnose/") {
		return // --diagnose's test message (uplink.Echo), not readings
	}
	var pack []struct {
		BN  string   `json:"bn"`
		BT  float64  `json:"bt"`
		N   string   `json:"n"`
		V   *float64 `json:"v"`
		VB  *bool    `json:"vb"`
		T   float64  `json:"t"`
		Seq uint64   `json:"seq"`
		TQ  string   `json:"tq"`
	}
	if err := json.Unmarshal(payload, &pack); err != nil {
		t.Errorf("readings message is not SenML JSON: %v", err)
		return
	}
	c.messages++
	now := time.Now()
	var bn string
	var bt float64
	for i, r := range pack {
		if i == 0 {
			bn, bt = r.BN, r.BT
		}
		rec := received{name: bn + r.N, seq: r.Seq, ms: int64(math.Round((bt + r.T) * 1000)), vb: r.VB, tq: r.TQ, at: now}
		if r.V != nil {
			rec.v = *r.V
		}
		c.records = append(c.records, rec)
	}
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.records...)
}

func (c *collector) lastStatus() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.statuses) == 0 {
		return nil
	}
	return c.statuses[len(c.statuses)-1]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// remaining opens the agent's buffer after it stopped and returns the seqs
// still queued.
func remaining(t *testing.T, stateDir string) map[uint64]bool {
	t.Helper()
	q, err := buffer.Open(filepath.Join(stateDir, config.BufferFile), buffer.Options{})
	if err != nil {
		t.Fatalf("reopen buffer: %v", err)
	}
	defer q.Close()
	left := map[uint64]bool{}
	var after uint64
	for {
		es, err := q.ReadAfter(after, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return left
		}
		for _, e := range es {
			left[e.Seq] = true
			after = e.Seq
		}
	}
}

// checkDelivery proves the delivery contract on what a receiver saw plus
// what is still buffered: every seq between the first and the last is
// accounted for (nothing deleted without a PUBACK), and after dropping
// repeats each sensor's readings arrived in seq and time order. It returns
// the number of distinct readings and of repeats.
func checkDelivery(t *testing.T, recs []received, left map[uint64]bool) (distinct, repeats int) {
	t.Helper()
	seen := map[uint64]string{} // seq → first sensor seen with it
	type key struct {
		name string
		seq  uint64
	}
	firstRec := map[key]bool{}
	lastSeq := map[string]uint64{}
	lastMS := map[string]int64{}
	for _, r := range recs {
		sensor := r.name[:strings.LastIndex(r.name, "/")]
		k := key{r.name, r.seq}
		if firstRec[k] {
			repeats++
			continue
		}
		firstRec[k] = true
		if s, ok := seen[r.seq]; ok && s != sensor {
			t.Errorf("seq %d carried by two sensors: %s and %s", r.seq, s, sensor)
		}
		seen[r.seq] = sensor
		if r.seq < lastSeq[r.name] {
			t.Errorf("%s: seq %d arrived after %d (order per sensor broken)", r.name, r.seq, lastSeq[r.name])
		}
		if r.ms < lastMS[r.name] {
			t.Errorf("%s: time went back at seq %d", r.name, r.seq)
		}
		lastSeq[r.name], lastMS[r.name] = r.seq, r.ms
	}
	if len(seen) == 0 {
		t.Fatal("nothing was delivered")
	}
	all := make([]uint64, 0, len(seen)+len(left))
	for s := range seen {
		all = append(all, s)
	}
	for s := range left {
		if _, dup := seen[s]; !dup {
			all = append(all, s)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	missing := 0
	for i := 1; i < len(all); i++ {
		if gap := all[i] - all[i-1]; gap != 1 {
			missing += int(gap - 1)
			if missing < 10 {
				t.Errorf("seqs %d..%d were neither delivered nor buffered", all[i-1]+1, all[i]-1)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d readings lost", missing)
	}
	return len(seen), repeats
}

// TestEndToEndBrokerOutage runs the real binary on simulated sensors against
// a real mosquitto that requires client certificates, stops the broker for
// more than 10 s mid-run, restarts it, and proves that no reading went
// missing, none was reordered per sensor, and none was deleted before the
// broker acknowledged it.
func TestEndToEndBrokerOutage(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	s := newSetup(t, b, b.PKI.Client, "")
	col := collect(t, b, "cityedge/test/gw-test")
	agent := startAgent(t, s.config, "--simulate")

	waitFor(t, "first readings", 10*time.Second, func() bool { return len(col.snapshot()) > 0 })
	time.Sleep(2 * time.Second)
	before := len(col.snapshot())
	b.Stop()
	outage := time.Now()
	time.Sleep(11 * time.Second)
	during := len(col.snapshot())
	b.Restart()
	t.Logf("broker down for %v; %d records before, %d while down", time.Since(outage).Round(time.Millisecond), before, during)
	// Everything buffered during the outage arrives after it, and live
	// readings keep flowing.
	waitFor(t, "backlog delivered after the outage", 30*time.Second, func() bool {
		st := col.lastStatus()
		return st != nil && st["state"] == "online" && len(col.snapshot()) > during+100
	})
	time.Sleep(2 * time.Second)
	code, took := agent.stop(t)
	if code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if took > 5*time.Second {
		t.Errorf("shutdown took %v, want within 5 s", took)
	}
	time.Sleep(500 * time.Millisecond) // last messages reach the subscriber
	left := remaining(t, s.stateDir)
	distinct, repeats := checkDelivery(t, col.snapshot(), left)
	t.Logf("delivered %d distinct readings (%d repeats), %d still buffered at exit", distinct, repeats, len(left))
	if st := col.lastStatus(); st == nil || st["state"] != "offline" {
		t.Errorf("last status = %v, want offline after SIGTERM", st)
	}
	logs := agent.stderr.String()
	if !strings.Contains(logs, "connect") {
		t.Errorf("agent log does not mention the connection: %s", logs)
	}
}

// TestForeignBrokerCA: a broker whose certificate another CA signed gets
// nothing; readings stay buffered and the log says why.
func TestForeignBrokerCA(t *testing.T) {
	dir := t.TempDir()
	pki, err := devpki.Dev(dir, "gw-test") // the city's CA: signs the gateway
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := devpki.NewCA(t.TempDir(), "impostor-ca")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := impostor.Issue("server", devpki.Leaf{CN: "localhost", DNS: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	// The broker accepts the gateway's certificate but presents one the
	// gateway has no reason to trust.
	b := testbroker.Start(t, testbroker.Options{PKI: &devpki.Set{CA: pki.CA, Server: srv, Client: pki.Client}})
	s := newSetup(t, b, pki.Client, "")
	agent := startAgent(t, s.config, "--simulate")
	waitFor(t, "the agent to report the untrusted broker", 15*time.Second, func() bool {
		return strings.Contains(agent.stderr.String(), "unknown authority")
	})
	time.Sleep(time.Second)
	if code, _ := agent.stop(t); code != 0 {
		t.Errorf("exit code = %d", code)
	}
	if strings.Contains(b.Log(), "New client connected") {
		t.Errorf("the broker saw a session:\n%s", b.Log())
	}
	if left := remaining(t, s.stateDir); len(left) == 0 {
		t.Error("no readings stayed buffered")
	} else {
		t.Logf("%d readings stayed buffered", len(left))
	}
}

// TestBadConfigExitsTwo: configuration problems stop the binary at once with
// exit code 2 and a message naming the file and key.
func TestBadConfigExitsTwo(t *testing.T) {
	dir := t.TempDir()
	// Valid but for the TLS files, which are checked after these mistakes.
	good := "[agent]\nid = \"gw-0042\"\n\n[buffer]\n\n[uplink]\nbrokers = [\"mqtts://broker.example.org:8883\"]\n\n" +
		"[[sensors]]\nname = \"air-1\"\ndriver = \"bme280\"\n"
	cases := map[string]string{
		"plaintext": strings.Replace(good, "mqtts://", "mqtt://", 1),
		"unknown":   strings.Replace(good, "[buffer]", "[buffer]\nmax_byte = 1", 1),
		"agent id":  strings.Replace(good, `"gw-0042"`, `"_gw-0042"`, 1), // RFC 8428 §4.5.1
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".toml")
			os.WriteFile(path, []byte(text), 0o644)
			cmd := exec.Command(agentBinary(t), "--config", path)
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState.ExitCode() != 2 {
				t.Fatalf("exit %d (%v), want 2: %s", cmd.ProcessState.ExitCode(), err, out)
			}
			if !strings.Contains(string(out), path) {
				t.Errorf("message does not name the file: %s", out)
			}
		})
	}
	cmd := exec.Command(agentBinary(t), "--nonsense")
	cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("bad flag: exit %d, want 2", cmd.ProcessState.ExitCode())
	}
}

// TestSecondAgentSameStateDir: a second agent on the same state_dir exits 2
// within seconds with a clear message, and the first keeps running.
func TestSecondAgentSameStateDir(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	s := newSetup(t, b, b.PKI.Client, "")
	col := collect(t, b, "cityedge/test/gw-test")
	first := startAgent(t, s.config, "--simulate")
	waitFor(t, "first agent delivering", 10*time.Second, func() bool { return len(col.snapshot()) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBinary(t), "--config", s.config, "--simulate")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("second agent exit %d, want 2: %s", code, out)
	}
	if !strings.Contains(string(out), "buffer.db") {
		t.Errorf("message does not name the buffer file: %s", out)
	}
	n := len(col.snapshot())
	waitFor(t, "first agent still delivering", 5*time.Second, func() bool { return len(col.snapshot()) > n })
	first.stop(t)
}
