// Package testbroker runs a real mosquitto for tests: a TLS listener on
// 127.0.0.1 that requires client certificates from a development PKI
// (certs/devpki), plus a subscriber to watch what reaches it.
//
// Tests that use it are skipped with "mosquitto not found: apt-get install
// mosquitto" when mosquitto is missing, and fail instead when
// CITYEDGE_REQUIRE_MOSQUITTO=1 (set by CI after installing it).
//
// The broker keeps its state in memory and saves it on a clean Stop
// (persistence in the test's temporary directory), so retained messages and
// the subscriber's session with its queued messages survive Stop/Restart, as
// they would on a production broker. Kill loses them.
package testbroker

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/certs/devpki"

	"github.com/cityedge/cityedge/scripts/testproc"
)

// RequireEnv names the environment variable that turns a missing mosquitto
// from a skip into a failure.
const RequireEnv = "CITYEDGE_REQUIRE_MOSQUITTO"

// Options configure a broker.
type Options struct {
	// PKI provides the CA, the broker certificate and the client
	// certificate. nil creates a fresh devpki.Dev in a temporary directory
	// with client common name "gw-test".
	PKI *devpki.Set
	// Extra lines appended to mosquitto.conf after the listener, so that
	// listener options apply to it (e.g. "tls_version tlsv1.1",
	// "crlfile /path/ca.crl").
	Extra string
	// Plaintext makes the listener plain MQTT without TLS, to test what a
	// client does when an mqtts:// URL points at it. URL still says mqtts://.
	Plaintext bool
	// Port to listen on; 0 picks a free one.
	Port int
}

// Message is what the subscriber received.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// Broker is a running mosquitto.
type Broker struct {
	URL  string // "mqtts://127.0.0.1:PORT"
	Port int
	PKI  *devpki.Set
	Dir  string // mosquitto.conf, persistence file

	t         testing.TB
	bin       string
	conf      string
	plaintext bool
	log       *testproc.Tail

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}

	subOnce sync.Once
	subCert tls.Certificate
	subErr  error
}

// Find returns the path of the mosquitto binary.
func Find() (string, error) {
	const std = "/usr/sbin/mosquitto"
	if _, err := os.Stat(std); err == nil {
		return std, nil
	}
	return exec.LookPath("mosquitto")
}

// Start runs a mosquitto for the rest of the test; it is killed in
// t.Cleanup, and its log is printed if the test failed.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("mosquitto not found (%s=1): apt-get install mosquitto", RequireEnv)
		}
		t.Skip("mosquitto not found: apt-get install mosquitto")
	}
	pki := opts.PKI
	if pki == nil {
		pki, err = devpki.Dev(t.TempDir(), "gw-test")
		if err != nil {
			t.Fatalf("testbroker: %v", err)
		}
	}
	b := &Broker{
		PKI:       pki,
		Dir:       t.TempDir(),
		t:         t,
		bin:       bin,
		plaintext: opts.Plaintext,
		log:       &testproc.Tail{Max: 1 << 20},
	}
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	t.Cleanup(func() {
		b.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("mosquitto log (port %d):\n%s", b.Port, b.log.String())
		}
	})

	// A free port can be taken by another process between probing and
	// mosquitto's bind; retry a few times unless the port was given.
	tries := 5
	if opts.Port != 0 {
		tries = 1
	}
	for i := 0; ; i++ {
		port := opts.Port
		if port == 0 {
			if port, err = testproc.FreePort(); err != nil {
				t.Fatalf("testbroker: %v", err)
			}
		}
		b.Port = port
		b.URL = fmt.Sprintf("mqtts://127.0.0.1:%d", port)
		if err = os.WriteFile(b.conf, []byte(b.config(opts.Extra)), 0o600); err != nil {
			t.Fatalf("testbroker: %v", err)
		}
		if err = b.start(); err == nil {
			return b
		}
		if i+1 >= tries || !strings.Contains(b.log.String(), "in use") {
			t.Fatalf("testbroker: %v\nmosquitto log:\n%s", err, b.log.String())
		}
	}
}

func (b *Broker) config(extra string) string {
	var c strings.Builder
	if os.Geteuid() == 0 {
		// Otherwise mosquitto drops to user "mosquitto", which cannot read
		// the test's 0600 key files.
		c.WriteString("user root\n")
	}
	fmt.Fprintf(&c, `per_listener_settings false
persistence true
persistence_location %s/
persistence_file mosquitto.db
autosave_interval 0
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
set_tcp_nodelay true
max_inflight_messages 0
max_queued_messages 0
`, b.Dir)
	if b.plaintext {
		fmt.Fprintf(&c, "allow_anonymous true\nlistener %d 127.0.0.1\n", b.Port)
	} else {
		fmt.Fprintf(&c, `allow_anonymous false
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
`, b.Port, b.PKI.CA.CertFile, b.PKI.Server.CertFile, b.PKI.Server.KeyFile)
	}
	if extra != "" {
		c.WriteString(extra)
		c.WriteString("\n")
	}
	return c.String()
}

// start runs mosquitto and waits until the port accepts connections.
func (b *Broker) start() error {
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mosquitto: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			b.mu.Lock()
			b.cmd = nil
			b.mu.Unlock()
			return fmt.Errorf("mosquitto exited at start (%v)", cmd.ProcessState)
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			b.kill(syscall.SIGKILL)
			return fmt.Errorf("mosquitto does not accept connections on %s: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill signals mosquitto and waits for it to exit (SIGKILL after 5 s).
func (b *Broker) kill(sig syscall.Signal) {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Stop ends mosquitto cleanly (SIGTERM: clients are disconnected, state is
// saved) and waits for it. The port is kept for Restart.
func (b *Broker) Stop() { b.kill(syscall.SIGTERM) }

// Kill ends mosquitto abruptly (SIGKILL): nothing is saved.
func (b *Broker) Kill() { b.kill(syscall.SIGKILL) }

// Restart starts mosquitto again on the same port with the same
// configuration (stopping it first if it runs). Call it from the test
// goroutine: it fails the test if the broker does not come up.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	if err := b.start(); err != nil {
		b.t.Fatalf("testbroker: restart on port %d: %v\nmosquitto log:\n%s", b.Port, err, b.log.String())
	}
}

// Pause freezes mosquitto (SIGSTOP): connections stay open but nothing is
// answered, like a hung broker or a black-holed network. Resume undoes it.
func (b *Broker) Pause() { b.signal(syscall.SIGSTOP) }

// Resume lets a paused mosquitto run again (SIGCONT).
func (b *Broker) Resume() { b.signal(syscall.SIGCONT) }

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		_ = b.cmd.Process.Signal(sig)
	}
}

// CPU returns the CPU time the running mosquitto has used (since its last
// start): benchmarks that share the machine with it report its part.
func (b *Broker) CPU() (time.Duration, error) {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("testbroker: mosquitto on port %d is not running", b.Port)
	}
	return testproc.CPU(cmd.Process.Pid)
}

// CPUPerOp starts counting mosquitto's CPU time for benchmark tb; the
// function it returns, called once the timer is stopped, reports it per op
// as broker-cpu-ns/op. On a machine the broker shares, its CPU is part of
// what a benchmark of the client pays for.
func (b *Broker) CPUPerOp(tb *testing.B) func() {
	tb.Helper()
	start, err := b.CPU()
	if err != nil {
		tb.Fatal(err)
	}
	return func() {
		tb.Helper()
		end, err := b.CPU()
		if err != nil {
			tb.Fatal(err)
		}
		tb.ReportMetric(float64(end-start)/float64(tb.N), "broker-cpu-ns/op")
	}
}

// Log returns mosquitto's log so far.
func (b *Broker) Log() string { return b.log.String() }

// ClientTLS returns a TLS configuration for the PKI's client certificate
// that trusts only the PKI's CA.
func (b *Broker) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	return TLSConfig(t, b.PKI.CA.CertFile, b.PKI.Client.CertFile, b.PKI.Client.KeyFile)
}

// TLSConfig builds a client TLS configuration (TLS 1.2 or later) trusting
// only the CA in caFile.
func TLSConfig(t testing.TB, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	pool, err := loadPool(caFile)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("testbroker: client certificate %s: %v", certFile, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func loadPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return pool, nil
}

// Subscribe subscribes to topic (wildcards allowed) with QoS 1 and returns
// the messages received, until the end of the test. It returns once the
// subscription is active. The subscriber authenticates with its own client
// certificate (common name "subscriber") and keeps a persistent session, so
// it reconnects after Stop/Restart without losing messages queued for it.
// It never blocks the broker: the channel holds 65536 messages, overflow
// fails the test.
func (b *Broker) Subscribe(t testing.TB, topic string) <-chan Message {
	t.Helper()
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	opts := mqtt.NewClientOptions().
		SetClientID("subscriber-" + hex.EncodeToString(id)).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port))
	if b.plaintext {
		opts.AddBroker("tcp://" + addr)
	} else {
		cert, err := b.subscriberCert()
		if err != nil {
			t.Fatalf("testbroker: subscriber certificate: %v", err)
		}
		pool, err := loadPool(b.PKI.CA.CertFile)
		if err != nil {
			t.Fatalf("testbroker: %v", err)
		}
		opts.AddBroker("mqtts://" + addr)
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}

	ch := make(chan Message, 1<<16)
	var overflow sync.Once
	handler := func(_ mqtt.Client, m mqtt.Message) {
		msg := Message{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), Retained: m.Retained()}
		select {
		case ch <- msg:
		default:
			overflow.Do(func() { t.Errorf("testbroker: subscriber on %q: more than %d unread messages", topic, cap(ch)) })
		}
	}
	opts.SetDefaultPublishHandler(handler)
	subscribed := make(chan error, 1)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Runs in its own goroutine; (re)subscribing is idempotent.
		go func() {
			tok := c.Subscribe(topic, 1, handler)
			var err error
			if !tok.WaitTimeout(5 * time.Second) {
				err = errors.New("no SUBACK within 5s")
			} else {
				err = tok.Error()
			}
			select {
			case subscribed <- err:
			default:
			}
		}()
	})
	cli := mqtt.NewClient(opts)
	cli.Connect()
	t.Cleanup(func() { cli.Disconnect(100) })
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("testbroker: subscribe %q: %v", topic, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("testbroker: subscriber could not subscribe to %q within 10s", topic)
	}
	return ch
}

// subscriberCert issues, once per broker, a certificate for the subscriber
// beside the PKI's CA, named after the port so brokers sharing a PKI do not
// overwrite each other's files.
func (b *Broker) subscriberCert() (tls.Certificate, error) {
	b.subOnce.Do(func() {
		iss, err := b.PKI.CA.Issue(fmt.Sprintf("subscriber-%d", b.Port), devpki.Leaf{CN: "subscriber", Client: true})
		if err != nil {
			b.subErr = err
			return
		}
		b.subCert, b.subErr = tls.LoadX509KeyPair(iss.CertFile, iss.KeyFile)
	})
	return b.subCert, b.subErr
}
