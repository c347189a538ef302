package uplink

// The brokers of the interoperability suite (interop_test.go): mosquitto
// (scripts/testbroker), a RabbitMQ node with its MQTT plugin
// (scripts/testrabbit, started once per test binary and shared) and the
// embedded mochi-mqtt broker of cmd/devbroker (built once and run as a
// process with the development PKI, as `make demo` runs it).

import (
	"bytes"
	"context"
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
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testproc"
	"github.com/cityedge/cityedge/scripts/testrabbit"
)

// interopBroker is what the suite needs of a broker under test.
type interopBroker interface {
	URL() string
	// PKI holds the CA, the broker certificate and the gateway's client
	// certificate (CN "gw-test").
	PKI() *devpki.Set
	// Subscribe subscribes with QoS 1 and a persistent session (clean
	// session off) and returns once the subscription is active.
	Subscribe(t testing.TB, topic string) <-chan testbroker.Message
	// Stop takes the broker down: its listener refuses TCP.
	Stop(t testing.TB)
	// Restart brings it back (a no-op when it runs).
	Restart(t testing.TB)
}

// brokerKind is one column of the interoperability table.
type brokerKind struct {
	name string
	// start returns a running broker; second another instance with the same
	// PKI, for failover.
	start   func(t *testing.T) interopBroker
	second  func(t *testing.T, first interopBroker) interopBroker
	version func() string
	// keepsSessions: a subscriber's persistent session and its queued
	// messages survive Stop/Restart.
	keepsSessions bool
}

var interopBrokers = []brokerKind{
	{
		name:          "mosquitto",
		keepsSessions: true, // persistence saved on a clean stop
		start: func(t *testing.T) interopBroker {
			return mosquittoBroker{testbroker.Start(t, testbroker.Options{})}
		},
		second: func(t *testing.T, first interopBroker) interopBroker {
			return mosquittoBroker{testbroker.Start(t, testbroker.Options{PKI: first.PKI()})}
		},
		version: mosquittoVersion,
	},
	{
		name:          "RabbitMQ",
		keepsSessions: true, // durable queues survive stop_app
		start:         func(t *testing.T) interopBroker { return sharedRabbit(t, 0) },
		second:        func(t *testing.T, _ interopBroker) interopBroker { return sharedRabbit(t, 1) },
		version: func() string {
			v, err := testrabbit.Find()
			if err != nil {
				return "not installed"
			}
			return v + " (Debian), 1 node, MQTT plugin"
		},
	},
	{
		name:          "mochi (devbroker)",
		keepsSessions: false, // the dev broker keeps everything in memory
		start: func(t *testing.T) interopBroker {
			pki, err := devpki.Dev(t.TempDir(), "gw-test")
			if err != nil {
				t.Fatal(err)
			}
			return startDevbroker(t, pki)
		},
		second: func(t *testing.T, first interopBroker) interopBroker {
			return startDevbroker(t, first.PKI())
		},
		version: mochiVersion,
	},
}

// mosquittoBroker adapts scripts/testbroker.
type mosquittoBroker struct{ b *testbroker.Broker }

func (m mosquittoBroker) URL() string      { return m.b.URL }
func (m mosquittoBroker) PKI() *devpki.Set { return m.b.PKI }
func (m mosquittoBroker) Subscribe(t testing.TB, topic string) <-chan testbroker.Message {
	return m.b.Subscribe(t, topic)
}
func (m mosquittoBroker) Stop(testing.TB) { m.b.Stop() }
func (m mosquittoBroker) Restart(testing.TB) {
	if !m.running() {
		m.b.Restart()
	}
}

func (m mosquittoBroker) running() bool {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(m.b.URL, "mqtts://"), time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func mosquittoVersion() string {
	bin, err := testbroker.Find()
	if err != nil {
		return "not installed"
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	if m := regexp.MustCompile(`mosquitto version (\S+)`).FindSubmatch(out); m != nil {
		return string(m[1]) + " (Debian)"
	}
	return "unknown"
}

// The RabbitMQ nodes shared by the test binary: started when a test first
// needs them, stopped by closeSharedBrokers (TestMain).
var shared struct {
	mu      sync.Mutex
	started bool
	dir     string
	pki     *devpki.Set
	nodes   [2]*rabbitBroker
	err     [2]error
}

// rabbitBroker is a shared RabbitMQ node.
type rabbitBroker struct {
	n   *testrabbit.Node
	pki *devpki.Set

	subOnce sync.Once
	subTLS  *tls.Config
	subErr  error
}

// sharedRabbit returns shared node i (0 or 1), starting the nodes on first
// use.
// Nodes are independent (not clustered): failover is between brokers in the
// gateway's list; the fleet test covers the cluster.
func sharedRabbit(t *testing.T, i int) *rabbitBroker {
	t.Helper()
	if _, err := testrabbit.Find(); err != nil {
		if os.Getenv(testrabbit.RequireEnv) == "1" {
			t.Fatalf("%v (%s=1)", err, testrabbit.RequireEnv)
		}
		t.Skip(err)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		// Both nodes boot at once on first use (a boot takes seconds of
		// mostly waiting); the second serves the failover test.
		shared.started = true
		shared.err[0] = func() error {
			dir, err := os.MkdirTemp("", "uplink-rabbit-")
			if err != nil {
				return err
			}
			shared.dir = dir
			shared.pki, err = devpki.Dev(filepath.Join(dir, "pki"), "gw-test")
			return err
		}()
		shared.err[1] = shared.err[0]
		if shared.err[0] == nil {
			var wg sync.WaitGroup
			for j := range shared.nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					began := time.Now()
					n, err := testrabbit.Start(context.Background(), testrabbit.Options{
						Dir:   filepath.Join(shared.dir, fmt.Sprintf("node%d", j+1)),
						Name:  fmt.Sprintf("uplink%d-%d", j+1, os.Getpid()),
						PKI:   shared.pki,
						Users: []string{"gw-test", "subscriber"},
					})
					if err != nil {
						shared.err[j] = err
						return
					}
					t.Logf("RabbitMQ %s node %s booted in %v", n.Version, n.Name, time.Since(began).Round(100*time.Millisecond))
					shared.nodes[j] = &rabbitBroker{n: n, pki: shared.pki}
				}()
			}
			wg.Wait()
		}
	}
	if shared.err[i] != nil {
		t.Fatalf("RabbitMQ: %v", shared.err[i])
	}
	b := shared.nodes[i]
	// A test that stopped the node and failed midway must not leave it down
	// for the next one.
	b.Restart(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("RabbitMQ log of %s (tail):\n%s", b.n.Name, tail(b.n.Log(), 8<<10))
		}
	})
	return b
}

// closeSharedBrokers stops the shared RabbitMQ nodes and removes their
// files, and the built devbroker.
func closeSharedBrokers() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for i, b := range shared.nodes {
		if b != nil {
			b.n.Close()
			shared.nodes[i] = nil
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	if devbrokerBin.dir != "" {
		_ = os.RemoveAll(devbrokerBin.dir)
	}
}

func (r *rabbitBroker) URL() string      { return r.n.URL }
func (r *rabbitBroker) PKI() *devpki.Set { return r.pki }

func (r *rabbitBroker) Stop(t testing.TB) {
	t.Helper()
	if err := r.n.Stop(context.Background()); err != nil {
		t.Fatalf("RabbitMQ stop: %v", err)
	}
}

func (r *rabbitBroker) Restart(t testing.TB) {
	t.Helper()
	if err := r.n.Restart(context.Background()); err != nil {
		t.Fatalf("RabbitMQ restart: %v", err)
	}
}

func (r *rabbitBroker) Subscribe(t testing.TB, topic string) <-chan testbroker.Message {
	t.Helper()
	r.subOnce.Do(func() { r.subTLS, r.subErr = subscriberTLS(r.pki, "rabbit") })
	if r.subErr != nil {
		t.Fatal(r.subErr)
	}
	return subscribe(t, r.n.URL, r.subTLS, topic)
}

// devbroker is cmd/devbroker run as a process.
type devbroker struct {
	url  string
	addr string
	pki  *devpki.Set
	dir  string // the PKI's directory, as devbroker's --pki
	log  *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}

	subOnce sync.Once
	subTLS  *tls.Config
	subErr  error
}

// devbrokerBin is cmd/devbroker built once per test binary.
var devbrokerBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func buildDevbroker(t *testing.T) string {
	t.Helper()
	devbrokerBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "uplink-devbroker-")
		if err != nil {
			devbrokerBin.err = err
			return
		}
		devbrokerBin.dir = dir
		devbrokerBin.path = filepath.Join(dir, "devbroker")
		// go test puts its own GOROOT/bin first in the test's PATH.
		cmd := exec.Command("go", "build", "-o", devbrokerBin.path, "./cmd/devbroker")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			devbrokerBin.err = fmt.Errorf("go build ./cmd/devbroker: %w\n%s", err, out)
		}
	})
	if devbrokerBin.err != nil {
		t.Fatal(devbrokerBin.err)
	}
	return devbrokerBin.path
}

func startDevbroker(t *testing.T, pki *devpki.Set) *devbroker {
	t.Helper()
	bin := buildDevbroker(t)
	port, err := testproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	d := &devbroker{
		addr: fmt.Sprintf("127.0.0.1:%d", port),
		pki:  pki,
		dir:  filepath.Dir(pki.CA.CertFile),
	}
	d.url = "mqtts://" + d.addr
	if d.log, err = os.Create(filepath.Join(t.TempDir(), "devbroker.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			b, _ := os.ReadFile(d.log.Name())
			t.Logf("devbroker output (tail):\n%s", tail(string(b), 8<<10))
		}
		d.log.Close()
	})
	d.start(t, bin)
	return d
}

func (d *devbroker) start(t testing.TB, bin string) {
	t.Helper()
	cmd := exec.Command(bin, "--pki", d.dir, "--listen", d.addr, "--client-cn", "gw-test")
	cmd.Stdout, cmd.Stderr = d.log, d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("devbroker exited at start (%v)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("devbroker does not accept connections on %s", d.addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill stops the broker (SIGTERM: its Close ends every connection) and
// waits for it.
func (d *devbroker) kill() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (d *devbroker) URL() string      { return d.url }
func (d *devbroker) PKI() *devpki.Set { return d.pki }
func (d *devbroker) Stop(testing.TB)  { d.kill() }

func (d *devbroker) Restart(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	up := d.cmd != nil
	d.mu.Unlock()
	if !up {
		d.start(t, devbrokerBin.path)
	}
}

func (d *devbroker) Subscribe(t testing.TB, topic string) <-chan testbroker.Message {
	t.Helper()
	d.subOnce.Do(func() { d.subTLS, d.subErr = subscriberTLS(d.pki, "devbroker") })
	if d.subErr != nil {
		t.Fatal(d.subErr)
	}
	return subscribe(t, d.url, d.subTLS, topic)
}

// mochiVersion reads the mochi-mqtt version cmd/devbroker is built with
// from go.mod.
func mochiVersion() string {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		return "unknown"
	}
	if m := regexp.MustCompile(`github.com/mochi-mqtt/server/v2 (v\S+)`).FindSubmatch(b); m != nil {
		return string(m[1]) + " (cmd/devbroker)"
	}
	return "unknown"
}

// subscriberTLS issues a client certificate with CN "subscriber" beside the
// PKI's CA.
func subscriberTLS(pki *devpki.Set, name string) (*tls.Config, error) {
	iss, err := pki.CA.Issue("subscriber-"+name, devpki.Leaf{CN: "subscriber", Client: true})
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(iss.CertFile, iss.KeyFile)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(pki.CA.CertFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate")
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// subscribe is testbroker's Subscribe for any broker: QoS 1, a persistent
// session, resubscribing on every reconnect, until the end of the test.
func subscribe(t testing.TB, url string, tc *tls.Config, topic string) <-chan testbroker.Message {
	t.Helper()
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	opts := mqtt.NewClientOptions().
		AddBroker(url).
		SetTLSConfig(tc).
		SetClientID("subscriber-" + hex.EncodeToString(id)).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
	ch := make(chan testbroker.Message, 1<<16)
	var overflow sync.Once
	handler := func(_ mqtt.Client, m mqtt.Message) {
		msg := testbroker.Message{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), Retained: m.Retained()}
		select {
		case ch <- msg:
		default:
			overflow.Do(func() { t.Errorf("subscriber on %q: more than %d unread messages", topic, cap(ch)) })
		}
	}
	opts.SetDefaultPublishHandler(handler)
	subscribed := make(chan error, 1)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		go func() {
			tok := c.Subscribe(topic, 1, handler)
			var err error
			if !tok.WaitTimeout(10 * time.Second) {
				err = errors.New("no SUBACK within 10s")
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
			t.Fatalf("subscribe %q at %s: %v", topic, url, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("subscriber could not subscribe to %q at %s within 20s", topic, url)
	}
	return ch
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
