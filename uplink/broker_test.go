package uplink

// Tests against a real mosquitto that requires client certificates
// (scripts/testbroker). They skip when mosquitto is missing, unless
// CITYEDGE_REQUIRE_MOSQUITTO=1.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
)

func TestPublishAckRoundTrip(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	status := b.Subscribe(t, testPrefix+"/status")
	readings := b.Subscribe(t, testPrefix+"/readings")
	const n = 10
	src := newMemSource(n)
	c := start(t, testConfig(t, b), src)

	for i := range n {
		select {
		case m := <-readings:
			if m.Topic != testPrefix+"/readings" || m.Retained || !bytes.Equal(m.Payload, payloadFor(i)) {
				t.Fatalf("message %d: topic %q retained %v payload %q; want batch %d in order", i, m.Topic, m.Retained, m.Payload, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("batch %d not received", i)
		}
	}
	select {
	case m := <-status:
		if string(m.Payload) != `{"state":"online"}` {
			t.Errorf("status %q, want the online status", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no status message")
	}
	waitFor(t, 5*time.Second, "all batches acked", func() bool { return src.ackedCount() == n })
	st := c.State()
	if !st.Connected || st.Broker != b.URL || st.Published != n || st.Acked != n || st.Sessions != 1 || st.LastUpload.IsZero() || st.InFlight != 0 {
		t.Errorf("state %+v; want connected to %s, %d published and acked, 1 session", st, b.URL, n)
	}
	src.checkViolations(t)
	if _, rewinds, _, _ := src.snapshot(); rewinds != 1 {
		t.Errorf("Rewind called %d times for one session, want 1", rewinds)
	}
}

// TestWindow proves the publishes are pipelined up to the window and never
// beyond it. Acked is slowed down so that the producer always has time to
// fill the window.
func TestWindow(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	for _, window := range []int{1, 4, 16} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			const n = 80
			src := newMemSource(n)
			src.ackDelay = 2 * time.Millisecond
			cfg := testConfig(t, b)
			cfg.Window = window
			cfg.ClientID = fmt.Sprintf("gw-window-%d", window)
			c := start(t, cfg, src)
			waitFor(t, 20*time.Second, "all batches acked", func() bool { return src.ackedCount() == n })
			_, _, maxOut, _ := src.snapshot()
			if maxOut != window {
				t.Errorf("at most %d batches were awaiting their ack at once; want exactly the window, %d", maxOut, window)
			}
			src.checkViolations(t)
			_ = c.stop(t)
		})
	}
}

// TestBrokerRestart stops the broker mid-run and restarts it: nothing is
// acked while the broker is away, everything is delivered afterwards.
func TestBrokerRestart(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	seen := collect(t, b.Subscribe(t, testPrefix+"/readings"))
	src := newMemSource(0)
	cfg := testConfig(t, b)
	cfg.Window = 4
	c := start(t, cfg, src)

	const n = 300
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for range n {
			src.Add(1)
			time.Sleep(3 * time.Millisecond)
		}
	}()
	waitFor(t, 10*time.Second, "60 batches acked", func() bool { return src.ackedCount() >= 60 })
	b.Stop()
	stopped := time.Now()
	waitFor(t, 5*time.Second, "the client to notice", func() bool { return !c.State().Connected })
	time.Sleep(500 * time.Millisecond) // attempts fail meanwhile
	if e := c.State().LastError; !strings.Contains(e, "connection refused") || !strings.Contains(e, b.URL) {
		t.Errorf("while the broker is down, LastError = %q; want connection refused at %s", e, b.URL)
	}
	restarted := time.Now()
	b.Restart()
	<-fed
	waitFor(t, 20*time.Second, "all batches acked", func() bool { return src.ackedCount() == n })
	waitFor(t, 10*time.Second, "all batches at the subscriber", func() bool { return seen.hasAll(n) })

	src.mu.Lock()
	for id, at := range src.ackedAt {
		// A PUBACK received just before the broker went away may be handled
		// a moment later; 100 ms is far beyond that.
		if at.After(stopped.Add(100*time.Millisecond)) && at.Before(restarted) {
			t.Errorf("batch %d acked at %v while the broker was down (%v to %v)", id, at, stopped, restarted)
		}
	}
	rewinds := src.rewinds
	src.mu.Unlock()
	if rewinds < 2 {
		t.Errorf("Rewind called %d times across a broker restart, want at least 2", rewinds)
	}
	if st := c.State(); st.Sessions < 2 || st.Acked < n {
		t.Errorf("state %+v", st)
	}
	src.checkViolations(t)
	t.Logf("%d batches, %d deliveries at the subscriber (duplicates are allowed, at-least-once)", n, seen.total())
}

// TestAckTimeoutOnHungBroker freezes the broker: publishes get no PUBACK, the
// session is dropped after AckTimeout, nothing is acked, and everything in
// flight is offered again and delivered once the broker runs again.
func TestAckTimeoutOnHungBroker(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	seen := collect(t, b.Subscribe(t, testPrefix+"/readings"))
	src := newMemSource(5)
	cfg := testConfig(t, b)
	cfg.Window = 4
	cfg.AckTimeout = 300 * time.Millisecond
	cfg.ConnectTimeout = 300 * time.Millisecond
	c := start(t, cfg, src)
	waitFor(t, 10*time.Second, "first batches acked", func() bool { return src.ackedCount() == 5 })

	b.Pause()
	src.Add(5)
	waitFor(t, 5*time.Second, "an ack timeout", func() bool { return strings.Contains(c.State().LastError, "no PUBACK") })
	time.Sleep(300 * time.Millisecond)
	if got := src.ackedCount(); got != 5 {
		t.Errorf("%d batches acked while the broker was frozen, want 5 (those before)", got)
	}
	b.Resume()
	waitFor(t, 20*time.Second, "all batches acked", func() bool { return src.ackedCount() == 10 })
	waitFor(t, 10*time.Second, "all batches at the subscriber", func() bool { return seen.hasAll(10) })
	src.mu.Lock()
	offers := append([]int(nil), src.offers...)
	src.mu.Unlock()
	for id := 5; id < 9; id++ { // the window that hung
		if offers[id] < 2 {
			t.Errorf("batch %d was offered %d times; it hung unacknowledged and must be offered again", id, offers[id])
		}
	}
	src.checkViolations(t)
}

// TestConnectFailures: in each case no session is established, nothing is
// taken from the Source, and the error names the cause and the broker.
func TestConnectFailures(t *testing.T) {
	pki, err := devpki.Dev(t.TempDir(), "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := devpki.NewCA(t.TempDir(), "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	foreignClient, err := other.Issue("foreign", devpki.Leaf{CN: "gw-test", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	expiredClient, err := pki.CA.Issue("expired", devpki.Leaf{CN: "gw-test", Client: true,
		NotBefore: time.Now().AddDate(0, -2, 0), NotAfter: time.Now().AddDate(0, -1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	tlsb := testbroker.Start(t, testbroker.Options{PKI: pki})
	plain := testbroker.Start(t, testbroker.Options{PKI: pki, Plaintext: true})
	good := tlsb.ClientTLS(t)

	tests := []struct {
		name   string
		broker *testbroker.Broker
		tls    func() *tls.Config
		want   string
	}{
		{"broker certificate from another CA", tlsb, func() *tls.Config {
			return testbroker.TLSConfig(t, other.CertFile, pki.Client.CertFile, pki.Client.KeyFile)
		}, "which is not in uplink.ca_file"},
		{"wrong broker host name", tlsb, func() *tls.Config {
			c := good.Clone()
			c.ServerName = "broker.example.org"
			return c
		}, "not broker.example.org"},
		{"plaintext listener behind mqtts", plain, func() *tls.Config { return good }, "TLS handshake"},
		{"client certificate from another CA", tlsb, func() *tls.Config {
			return testbroker.TLSConfig(t, pki.CA.CertFile, foreignClient.CertFile, foreignClient.KeyFile)
		}, "the broker rejected this gateway's certificate (issuer CN="},
		{"expired client certificate", tlsb, func() *tls.Config {
			return testbroker.TLSConfig(t, pki.CA.CertFile, expiredClient.CertFile, expiredClient.KeyFile)
		}, "the broker rejected this gateway's certificate (issuer CN="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource(5)
			cfg := testConfig(t, tt.broker)
			tc := tt.tls()
			cfg.TLSConfig = func() (*tls.Config, error) { return tc, nil }
			c := start(t, cfg, src)
			waitFor(t, 10*time.Second, "a connection error", func() bool { return c.State().LastError != "" })
			_ = c.stop(t)
			st := c.State()
			t.Logf("error: %s", st.LastError)
			if !strings.Contains(st.LastError, tt.want) || !strings.Contains(st.LastError, tt.broker.URL) {
				t.Errorf("LastError %q; want it to contain %q and the broker URL", st.LastError, tt.want)
			}
			nexts, _, _, _ := src.snapshot()
			if st.Sessions != 0 || st.Published != 0 || nexts != 0 || src.ackedCount() != 0 {
				t.Errorf("sessions %d, published %d, batches taken %d, acked %d; want nothing", st.Sessions, st.Published, nexts, src.ackedCount())
			}
		})
	}
}

// TestFailover: the first broker is down, the second takes the batches; then
// the second goes down and the first, back again, takes the rest.
func TestFailover(t *testing.T) {
	a := testbroker.Start(t, testbroker.Options{})
	a.Stop()
	bb := testbroker.Start(t, testbroker.Options{PKI: a.PKI})
	seenB := collect(t, bb.Subscribe(t, testPrefix+"/readings"))
	src := newMemSource(20)
	cfg := testConfig(t, bb)
	cfg.Brokers = []string{a.URL, bb.URL}
	c := start(t, cfg, src)
	waitFor(t, 10*time.Second, "20 batches acked", func() bool { return src.ackedCount() == 20 })
	if st := c.State(); st.Broker != bb.URL || !st.Connected {
		t.Errorf("state %+v; want connected to the second broker %s", st, bb.URL)
	}
	waitFor(t, 5*time.Second, "20 batches at the second broker", func() bool { return seenB.hasAll(20) })

	a.Restart()
	seenA := collect(t, a.Subscribe(t, testPrefix+"/readings"))
	bb.Stop()
	src.Add(20)
	waitFor(t, 10*time.Second, "40 batches acked", func() bool { return src.ackedCount() == 40 })
	if st := c.State(); st.Broker != a.URL {
		t.Errorf("state %+v; want connected to the first broker %s again", st, a.URL)
	}
	waitFor(t, 5*time.Second, "the rest at the first broker", func() bool {
		for id := 20; id < 40; id++ {
			if !seenA.has(id) && !seenB.has(id) {
				return false
			}
		}
		return true
	})
	src.checkViolations(t)
}

// TestTLSConfigErrorThenReconnect: while the TLS material is unusable no
// connection is attempted; Reconnect cuts the (long) backoff short once it is
// fixed, and a Reconnect while connected starts a new session that reads the
// TLS configuration again.
func TestTLSConfigErrorThenReconnect(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	seen := collect(t, b.Subscribe(t, testPrefix+"/readings"))
	good := b.ClientTLS(t)
	var usable atomic.Bool
	var calls atomic.Int32
	src := newMemSource(5)
	cfg := testConfig(t, b)
	cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour // only Reconnect can bring it back within the test
	cfg.TLSConfig = func() (*tls.Config, error) {
		calls.Add(1)
		if !usable.Load() {
			return nil, errors.New("client certificate gw-test expired 2024-01-01")
		}
		return good, nil
	}
	conns := strings.Count(b.Log(), "New connection from") // readiness probe and subscriber
	c := start(t, cfg, src)
	waitFor(t, 5*time.Second, "the TLS error", func() bool { return strings.Contains(c.State().LastError, "expired") })
	if st := c.State(); st.Sessions != 0 || st.Published != 0 {
		t.Fatalf("state %+v; want no session with unusable TLS material", st)
	}
	if n := strings.Count(b.Log(), "New connection from"); n != conns {
		t.Errorf("the broker saw %d connection attempts although the TLS configuration was unusable:\n%s", n-conns, b.Log())
	}

	usable.Store(true)
	c.Reconnect()
	waitFor(t, 10*time.Second, "the first batches acked", func() bool { return src.ackedCount() == 5 })
	before := calls.Load()
	c.Reconnect()
	src.Add(5)
	waitFor(t, 10*time.Second, "a second session", func() bool { return c.State().Sessions == 2 })
	waitFor(t, 10*time.Second, "all batches acked", func() bool { return src.ackedCount() == 10 })
	waitFor(t, 5*time.Second, "all batches at the subscriber", func() bool { return seen.hasAll(10) })
	if calls.Load() <= before {
		t.Error("the new session did not read the TLS configuration again")
	}
	src.checkViolations(t)
}

// statusLog returns a Status function whose payloads carry a call counter, so
// the test can tell the last will (taken at connect) from a later offline.
func statusLog(willN *atomic.Int64) func(bool) []byte {
	var n atomic.Int64
	return func(online bool) []byte {
		i := n.Add(1)
		state := "online"
		if !online {
			state = "offline"
			willN.CompareAndSwap(0, i)
		}
		return fmt.Appendf(nil, `{"state":%q,"n":%d}`, state, i)
	}
}

type statusMsg struct {
	State string `json:"state"`
	N     int64  `json:"n"`
	PID   int    `json:"pid"`
}

func nextStatus(t *testing.T, ch <-chan testbroker.Message, what string) (statusMsg, testbroker.Message) {
	t.Helper()
	select {
	case m := <-ch:
		var s statusMsg
		if err := json.Unmarshal(m.Payload, &s); err != nil {
			t.Fatalf("%s: status %q: %v", what, m.Payload, err)
		}
		return s, m
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no status message", what)
	}
	panic("unreachable")
}

// TestStatusRepublished drives the status interval with a fake clock: the
// retained online status is published on connect and again every StatusEvery.
func TestStatusRepublished(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	status := b.Subscribe(t, testPrefix+"/status")
	fc := clockwork.NewFakeClock()
	var willN atomic.Int64
	cfg := testConfig(t, b)
	cfg.Status = statusLog(&willN)
	cfg.clock = fc
	cfg.AckTimeout = time.Hour // advancing the clock must not expire a pending ack
	start(t, cfg, newMemSource(0))
	first, _ := nextStatus(t, status, "on connect")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		// serve has started (the status arrived), so its ticker exists.
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-status:
			t.Fatalf("status %q published before the interval passed", m.Payload)
		case <-time.After(100 * time.Millisecond):
		}
		fc.Advance(cfg.StatusEvery)
		s, _ := nextStatus(t, status, fmt.Sprintf("interval %d", i+1))
		if s.State != "online" || s.N <= first.N {
			t.Fatalf("interval %d: status %+v; want a fresh online status after %+v", i+1, s, first)
		}
		first = s
	}
}

// TestRunCancelPublishesOffline: cancelling Run publishes the offline status
// itself (not the last will) and disconnects cleanly.
func TestRunCancelPublishesOffline(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	var willN atomic.Int64
	src := newMemSource(3)
	cfg := testConfig(t, b)
	cfg.Status = statusLog(&willN)
	c := start(t, cfg, src)
	waitFor(t, 10*time.Second, "batches acked", func() bool { return src.ackedCount() == 3 })
	if err := c.stop(t); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	s, m := nextStatus(t, b.Subscribe(t, testPrefix+"/status"), "after cancel")
	if s.State != "offline" || !m.Retained {
		t.Fatalf("retained status %q (retained %v); want offline", m.Payload, m.Retained)
	}
	if s.N == willN.Load() {
		t.Errorf("the retained offline status is the last will (n=%d): Run did not publish offline itself", s.N)
	}
	if st := c.State(); st.Connected {
		t.Errorf("still connected after Run returned: %+v", st)
	}
	if !strings.Contains(b.Log(), "gw-test disconnected") {
		t.Errorf("the broker did not log a clean disconnect of gw-test:\n%s", b.Log())
	}
}

// TestRunCancelOnHungBroker: with the broker frozen and the socket buffers
// full (publishes block inside paho), cancelling Run still returns within the
// 5 s a SIGTERM allows, and nothing is acked.
func TestRunCancelOnHungBroker(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	src := newMemSource(0)
	src.pad = 1 << 20 // 16 in flight exceed what localhost TCP buffers hold
	cfg := testConfig(t, b)
	cfg.StopTimeout = time.Second
	cfg.AckTimeout = time.Minute // the session must still be up at cancel
	c := start(t, cfg, src)
	waitFor(t, 10*time.Second, "connected", func() bool { return c.State().Connected })
	b.Pause()
	src.Add(24)
	waitFor(t, 10*time.Second, "publishes in flight", func() bool { return c.State().InFlight > 0 })
	time.Sleep(500 * time.Millisecond) // until paho's writer is stuck on the full socket
	began := time.Now()
	if err := c.stop(t); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Run took %v to return after cancel; a SIGTERM allows 5 s", took)
	}
	if n := src.ackedCount(); n != 0 {
		t.Errorf("%d batches acked by a frozen broker", n)
	}
	b.Resume()
}

// TestStatusAndLastWill runs the client in a separate process, kills it with
// SIGKILL, and expects the broker to publish the retained last will.
func TestStatusAndLastWill(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	status := b.Subscribe(t, testPrefix+"/status")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=lwt",
		"UPLINK_BROKER="+b.URL,
		"UPLINK_CA="+b.PKI.CA.CertFile,
		"UPLINK_CERT="+b.PKI.Client.CertFile,
		"UPLINK_KEY="+b.PKI.Client.KeyFile,
	)
	var out bytes.Buffer
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
		if t.Failed() {
			t.Logf("helper output:\n%s", out.String())
		}
	})

	s, _ := nextStatus(t, status, "helper online")
	if s.State != "online" || s.PID != cmd.Process.Pid {
		t.Fatalf("status %+v; want online from pid %d", s, cmd.Process.Pid)
	}
	if s, m := nextStatus(t, b.Subscribe(t, testPrefix+"/status"), "new subscriber"); s.State != "online" || !m.Retained {
		t.Fatalf("a new subscriber got %q retained=%v; want the retained online status", m.Payload, m.Retained)
	}

	_ = cmd.Process.Kill() // SIGKILL: no DISCONNECT, the socket just closes
	_ = cmd.Wait()
	killed = true
	s, _ = nextStatus(t, status, "after kill")
	if s.State != "offline" || s.PID != cmd.Process.Pid {
		t.Fatalf("status after kill %+v; want the offline last will of pid %d", s, cmd.Process.Pid)
	}
	if s, m := nextStatus(t, b.Subscribe(t, testPrefix+"/status"), "new subscriber after kill"); s.State != "offline" || !m.Retained {
		t.Fatalf("a new subscriber got %q retained=%v; want the retained offline will", m.Payload, m.Retained)
	}
}

// lwtHelper is the helper process of TestStatusAndLastWill: a client that
// runs until killed.
func lwtHelper() int {
	pool, cert, err := loadHelperTLS()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pid := os.Getpid()
	c, err := New(Config{
		Brokers:     []string{os.Getenv("UPLINK_BROKER")},
		ClientID:    cmp.Or(os.Getenv("UPLINK_CLIENT_ID"), "gw-lwt"),
		TopicPrefix: cmp.Or(os.Getenv("UPLINK_PREFIX"), testPrefix),
		TLSConfig: func() (*tls.Config, error) {
			return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
		},
		Status: func(online bool) []byte {
			state := "offline"
			if online {
				state = "online"
			}
			return fmt.Appendf(nil, `{"state":%q,"pid":%d}`, state, pid)
		},
	}, newMemSource(3))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = c.Run(context.Background())
	return 0
}

func loadHelperTLS() (*x509.CertPool, tls.Certificate, error) {
	pem, err := os.ReadFile(os.Getenv("UPLINK_CA"))
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, tls.Certificate{}, errors.New("no CA certificate")
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("UPLINK_CERT"), os.Getenv("UPLINK_KEY"))
	return pool, cert, err
}
