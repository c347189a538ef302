package uplink

// The interoperability suite: the same end-to-end assertions against every
// broker of interop_brokers_test.go — mosquitto, RabbitMQ (skipped without
// rabbitmq-server unless CITYEDGE_REQUIRE_RABBITMQ=1) and the embedded
// mochi broker of cmd/devbroker. `go test -v -run TestInterop ./uplink`
// prints the table (broker × feature, tested version); with
// `-args -interop-doc=../docs/FLEET.md` it also replaces the table between
// <!-- interop:begin --> and <!-- interop:end --> in that file.

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testlog"
)

var interopDoc = flag.String("interop-doc", "", "replace the interoperability table in this file (docs/FLEET.md)")

// interopFeature is one row of the table.
type interopFeature struct {
	id   string
	name string
	run  func(t *testing.T, k brokerKind, b interopBroker)
}

var interopFeatures = []interopFeature{
	{"mtls", "connect with mutual TLS (CN = user); other certificates refused", interopMTLS},
	{"qos1", "QoS 1: a batch is acked (deleted) only on its PUBACK, every acked batch at the subscriber", interopQoS1},
	{"retained", "retained `status` and retained side messages (zones) for a late subscriber", interopRetained},
	{"will", "last will: `offline` on SIGKILL, live and retained", interopLastWill},
	{"reconnect", "reconnect after a broker restart; nothing acked while it is down", interopReconnect},
	{"failover", "failover to the next broker in the list and back; retained `status` and zones re-published there", interopFailover},
	{"takeover", "session takeover (second connection with the client id): one session, no lost ack", interopTakeover},
}

// TestInterop runs every feature against every broker and prints the table.
func TestInterop(t *testing.T) {
	results := make([][]string, len(interopFeatures))
	for i := range results {
		results[i] = make([]string, len(interopBrokers))
	}
	for j, k := range interopBrokers {
		for i, f := range interopFeatures {
			var skipReason string
			ok := t.Run(k.name+"/"+f.id, func(t *testing.T) {
				defer func() {
					if t.Skipped() {
						skipReason = "skipped"
					}
				}()
				b := k.start(t)
				f.run(t, k, b)
			})
			switch {
			case skipReason != "":
				results[i][j] = skipReason
			case ok:
				results[i][j] = "pass"
			default:
				results[i][j] = "**FAIL**"
			}
		}
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "| feature |")
	for _, k := range interopBrokers {
		fmt.Fprintf(&tb, " %s |", k.name)
	}
	fmt.Fprintf(&tb, "\n|---|")
	for range interopBrokers {
		fmt.Fprintf(&tb, "---|")
	}
	fmt.Fprintf(&tb, "\n| tested version |")
	for _, k := range interopBrokers {
		fmt.Fprintf(&tb, " %s |", k.version())
	}
	for i, f := range interopFeatures {
		fmt.Fprintf(&tb, "\n| %s |", f.name)
		for j := range interopBrokers {
			fmt.Fprintf(&tb, " %s |", results[i][j])
		}
	}
	tb.WriteString("\n")
	t.Logf("interoperability (go test -run TestInterop ./uplink):\n%s", tb.String())
	if *interopDoc != "" {
		if err := replaceMarked(*interopDoc, "interop", tb.String()); err != nil {
			t.Error(err)
		}
	}
}

// replaceMarked replaces the text between <!-- name:begin --> and
// <!-- name:end --> in file.
func replaceMarked(file, name, text string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s section", file, strings.TrimSpace(begin), end)
	}
	s = s[:i+len(begin)] + text + s[j:]
	return os.WriteFile(file, []byte(s), 0o644)
}

// interopConfig is a Config for broker b with a client id and topic prefix
// of its own (brokers are shared between tests) and short timeouts.
func interopConfig(t *testing.T, b interopBroker, id string) Config {
	tc := testbroker.TLSConfig(t, b.PKI().CA.CertFile, b.PKI().Client.CertFile, b.PKI().Client.KeyFile)
	return Config{
		Brokers:         []string{b.URL()},
		ClientID:        "gw-interop-" + id,
		TopicPrefix:     "cityedge/interop/" + id,
		TLSConfig:       func() (*tls.Config, error) { return tc, nil },
		KeepAlive:       5 * time.Second,
		ConnectTimeout:  5 * time.Second,
		AckTimeout:      5 * time.Second,
		BackoffMin:      50 * time.Millisecond,
		BackoffMax:      time.Second,
		ReconnectSpread: 500 * time.Millisecond,
		StatusEvery:     time.Minute,
		StopTimeout:     2 * time.Second,
		Logger:          testLogger(t),
	}
}

// checkAckedAtBroker: every acked batch reached the subscriber (a PUBACK
// means the broker had it).
func checkAckedAtBroker(t *testing.T, src *memSource, seen *seenSet) {
	t.Helper()
	waitFor(t, 15*time.Second, "every acked batch at the subscriber", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		for id, a := range src.acked {
			if a && !seen.has(id) {
				return false
			}
		}
		return true
	})
}

func interopMTLS(t *testing.T, _ brokerKind, b interopBroker) {
	status := b.Subscribe(t, "cityedge/interop/mtls/status")
	cfg := interopConfig(t, b, "mtls")
	c := start(t, cfg, newMemSource(3))
	waitFor(t, 20*time.Second, "a session", func() bool { return c.State().Connected })
	if m := nextMsg(t, status, "online status"); string(m.Payload) != `{"state":"online"}` {
		t.Errorf("status %q, want online", m.Payload)
	}
	_ = c.stop(t)

	other, err := devpki.NewCA(t.TempDir(), "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue("foreign", devpki.Leaf{CN: "gw-test", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	good := testbroker.TLSConfig(t, b.PKI().CA.CertFile, b.PKI().Client.CertFile, b.PKI().Client.KeyFile)
	noCert := good.Clone()
	noCert.Certificates = nil
	for _, tt := range []struct {
		name string
		tc   *tls.Config
	}{
		{"client certificate from another CA", testbroker.TLSConfig(t, b.PKI().CA.CertFile, foreign.CertFile, foreign.KeyFile)},
		{"no client certificate", noCert},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource(3)
			cfg := interopConfig(t, b, "mtls-refused")
			cfg.TLSConfig = func() (*tls.Config, error) { return tt.tc, nil }
			c := start(t, cfg, src)
			waitFor(t, 20*time.Second, "a connection error", func() bool { return c.State().LastError != "" })
			_ = c.stop(t)
			st := c.State()
			t.Logf("refused: %s", st.LastError)
			if st.Sessions != 0 || src.ackedCount() != 0 || !strings.Contains(st.LastError, b.URL()) {
				t.Errorf("state %+v; want no session, nothing acked, an error naming %s", st, b.URL())
			}
		})
	}
}

func interopQoS1(t *testing.T, _ brokerKind, b interopBroker) {
	seen := collect(t, b.Subscribe(t, "cityedge/interop/qos1/readings"))
	const n = 60
	src := newMemSource(n)
	c := start(t, interopConfig(t, b, "qos1"), src)
	waitFor(t, 30*time.Second, "all batches acked", func() bool { return src.ackedCount() == n })
	checkAckedAtBroker(t, src, seen)
	if st := c.State(); st.Published != n || st.Acked != n || st.Sessions != 1 || st.InFlight != 0 {
		t.Errorf("state %+v; want %d published and acked in 1 session", st, n)
	}
	src.checkViolations(t)
}

func interopRetained(t *testing.T, _ brokerKind, b interopBroker) {
	const prefix = "cityedge/interop/retained"
	live := b.Subscribe(t, prefix+"/status")
	cfg := interopConfig(t, b, "retained")
	c := start(t, cfg, newMemSource(0))
	c.SetRetained("zones/z1", []byte(`{"free":7}`))
	if m := nextMsg(t, live, "online status"); string(m.Payload) != `{"state":"online"}` {
		t.Fatalf("status %q, want online", m.Payload)
	}
	lateRetained(t, b, prefix+"/status", `{"state":"online"}`)
	lateRetained(t, b, prefix+"/zones/z1", `{"free":7}`)
	_ = c.stop(t)
	lateRetained(t, b, prefix+"/status", `{"state":"offline"}`)
}

// lateRetained subscribes anew until the retained message of topic arrives
// with the wanted payload (a broker may store it a moment after routing it).
func lateRetained(t *testing.T, b interopBroker, topic, want string) {
	t.Helper()
	var got []string
	for range 5 {
		ch := b.Subscribe(t, topic)
		select {
		case m := <-ch:
			if m.Retained && string(m.Payload) == want {
				return
			}
			got = append(got, fmt.Sprintf("%q retained=%v", m.Payload, m.Retained))
		case <-time.After(2 * time.Second):
			got = append(got, "nothing")
		}
	}
	t.Fatalf("late subscribers to %s got %v; want the retained %s", topic, got, want)
}

func nextMsg(t *testing.T, ch <-chan testbroker.Message, what string) testbroker.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: nothing received", what)
		return testbroker.Message{}
	}
}

func interopLastWill(t *testing.T, _ brokerKind, b interopBroker) {
	const prefix = "cityedge/interop/will"
	status := b.Subscribe(t, prefix+"/status")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=lwt",
		"UPLINK_BROKER="+b.URL(),
		"UPLINK_CA="+b.PKI().CA.CertFile,
		"UPLINK_CERT="+b.PKI().Client.CertFile,
		"UPLINK_KEY="+b.PKI().Client.KeyFile,
		"UPLINK_CLIENT_ID=gw-interop-will",
		"UPLINK_PREFIX="+prefix,
	)
	var out testlog.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	s, _ := nextStatus(t, status, "helper online")
	if s.State != "online" || s.PID != cmd.Process.Pid {
		t.Fatalf("status %+v; want online from pid %d", s, cmd.Process.Pid)
	}
	_ = cmd.Process.Kill() // SIGKILL: no DISCONNECT, the socket just closes
	_ = cmd.Wait()
	killed = true
	s, _ = nextStatus(t, status, "after kill")
	if s.State != "offline" || s.PID != cmd.Process.Pid {
		t.Fatalf("status after kill %+v; want the offline last will of pid %d", s, cmd.Process.Pid)
	}
	lateRetained(t, b, prefix+"/status", fmt.Sprintf(`{"state":"offline","pid":%d}`, cmd.Process.Pid))
}

func interopReconnect(t *testing.T, k brokerKind, b interopBroker) {
	seen := collect(t, b.Subscribe(t, "cityedge/interop/reconnect/readings"))
	src := newMemSource(20)
	cfg := interopConfig(t, b, "reconnect")
	cfg.Window = 4
	c := start(t, cfg, src)
	waitFor(t, 20*time.Second, "the first batches acked", func() bool { return src.ackedCount() == 20 })
	checkAckedAtBroker(t, src, seen)

	b.Stop(t)
	stopped := time.Now()
	src.Add(20) // nothing of these may be acked while the broker is down
	waitFor(t, 20*time.Second, "the client to notice", func() bool { return !c.State().Connected })
	waitFor(t, 20*time.Second, "a refused attempt", func() bool {
		return strings.Contains(c.State().LastError, "connection refused")
	})
	restarted := time.Now()
	if got := src.ackedCount(); got != 20 {
		t.Errorf("%d batches acked with the broker down, want the 20 acked before", got)
	}
	b.Restart(t)
	if !k.keepsSessions {
		// The subscriber's session died with the broker: a fresh one sees
		// only what comes after it; the agent's part is the acks.
		seen = collect(t, b.Subscribe(t, "cityedge/interop/reconnect/readings"))
	}
	waitFor(t, 30*time.Second, "all batches acked", func() bool { return src.ackedCount() == 40 })
	src.Add(20)
	waitFor(t, 30*time.Second, "the batches after the restart acked", func() bool { return src.ackedCount() == 60 })
	if k.keepsSessions {
		checkAckedAtBroker(t, src, seen)
	} else {
		waitFor(t, 15*time.Second, "the batches after the restart at the subscriber", func() bool {
			for id := 40; id < 60; id++ {
				if !seen.has(id) {
					return false
				}
			}
			return true
		})
	}
	src.mu.Lock()
	for id, at := range src.ackedAt {
		if at.After(stopped.Add(100*time.Millisecond)) && at.Before(restarted) {
			t.Errorf("batch %d acked at %v while the broker was down", id, at)
		}
	}
	src.mu.Unlock()
	if st := c.State(); st.Sessions < 2 || !st.Connected {
		t.Errorf("state %+v; want connected again, at least 2 sessions", st)
	}
	src.checkViolations(t)
}

func interopFailover(t *testing.T, k brokerKind, a interopBroker) {
	bb := k.second(t, a)
	a.Stop(t)
	t.Cleanup(func() { a.Restart(t) })
	const topic = "cityedge/interop/failover/readings"
	seenB := collect(t, bb.Subscribe(t, topic))
	src := newMemSource(20)
	cfg := interopConfig(t, a, "failover")
	cfg.Brokers = []string{a.URL(), bb.URL()}
	c := start(t, cfg, src)
	c.SetRetained("zones/z1", []byte(`{"free":1}`))
	waitFor(t, 30*time.Second, "20 batches acked", func() bool { return src.ackedCount() == 20 })
	c.SetRetained("zones/z1", []byte(`{"free":2}`)) // the newest, while on the second broker
	if st := c.State(); st.Broker != bb.URL() || !st.Connected {
		t.Errorf("state %+v; want connected to the second broker %s", st, bb.URL())
	}
	checkAckedAtBroker(t, src, seenB)

	a.Restart(t)
	seenA := collect(t, a.Subscribe(t, topic))
	bb.Stop(t)
	t.Cleanup(func() { bb.Restart(t) })
	src.Add(20)
	waitFor(t, 30*time.Second, "40 batches acked", func() bool { return src.ackedCount() == 40 })
	if st := c.State(); st.Broker != a.URL() {
		t.Errorf("state %+v; want connected to the first broker %s again", st, a.URL())
	}
	waitFor(t, 15*time.Second, "every batch at one of the brokers", func() bool {
		for id := range 40 {
			if !seenA.has(id) && !seenB.has(id) {
				return false
			}
		}
		return true
	})
	// The first broker never saw the newest zone message: the new session
	// published it again, with the online status (what covers a cluster
	// whose retained store is per node).
	lateRetained(t, a, "cityedge/interop/failover/zones/z1", `{"free":2}`)
	lateRetained(t, a, "cityedge/interop/failover/status", `{"state":"online"}`)
	src.checkViolations(t)
}

// interopTakeover: while the agent publishes, a second client connects
// with the agent's client id. The broker closes the older connection (the
// agent's); the agent reconnects, which in turn closes the intruder's. The
// agent must end with one working session, every batch acked exactly once,
// only on the connection that sent it, and every acked batch at the broker.
func interopTakeover(t *testing.T, _ brokerKind, b interopBroker) {
	seen := collect(t, b.Subscribe(t, "cityedge/interop/takeover/readings"))
	src := newMemSource(0)
	cfg := interopConfig(t, b, "takeover")
	cfg.Window = 8
	c := start(t, cfg, src)

	const n = 300
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for range n {
			src.Add(1)
			time.Sleep(4 * time.Millisecond)
		}
	}()
	waitFor(t, 20*time.Second, "50 batches acked", func() bool { return src.ackedCount() >= 50 })

	var intruderLost atomic.Bool
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(cfg.ClientID).
		SetTLSConfig(testbroker.TLSConfig(t, b.PKI().CA.CertFile, b.PKI().Client.CertFile, b.PKI().Client.KeyFile)).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).SetProtocolVersion(4).
		SetConnectionLostHandler(func(mqtt.Client, error) { intruderLost.Store(true) })
	intruder := mqtt.NewClient(opts)
	tok := intruder.Connect()
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("the second connection with client id %s: %v", cfg.ClientID, tok.Error())
	}
	t.Cleanup(func() { intruder.Disconnect(0) })
	ackedAtTakeover := src.ackedCount()

	waitFor(t, 30*time.Second, "the agent's second session", func() bool {
		st := c.State()
		return st.Sessions >= 2 && st.Connected
	})
	waitFor(t, 20*time.Second, "the intruder to be closed by the agent's reconnect", intruderLost.Load)
	<-fed
	waitFor(t, 30*time.Second, "all batches acked", func() bool { return src.ackedCount() == n })
	checkAckedAtBroker(t, src, seen)
	src.Add(10) // the session it ended with works
	waitFor(t, 20*time.Second, "the batches after the takeover acked", func() bool { return src.ackedCount() == n+10 })
	checkAckedAtBroker(t, src, seen)
	st := c.State()
	if st.Sessions != 2 || !st.Connected {
		t.Errorf("state %+v; want exactly 2 sessions (one takeover, one reconnect), connected", st)
	}
	src.checkViolations(t) // acked twice, or acked after a rewind without a new offer
	_, rewinds, _, _ := src.snapshot()
	t.Logf("%d acked before the takeover; %d rewinds; %d deliveries for %d batches; last error %q",
		ackedAtTakeover, rewinds, seen.total(), n+10, st.LastError)
	if rewinds != 2 {
		t.Errorf("%d rewinds, want 2 (one per session)", rewinds)
	}
}
