package testrabbit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/certs/devpki"
)

func connect(t *testing.T, url string, tc *tls.Config) error {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(strings.Replace(url, "mqtts://", "ssl://", 1)).SetClientID("probe").
		SetTLSConfig(tc).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetProtocolVersion(4)
	cli := mqtt.NewClient(opts)
	tok := cli.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() == nil {
		cli.Disconnect(100)
	}
	return tok.Error()
}

// TestNode: a node lets a client in with a certificate whose CN is a user,
// refuses one whose CN is not, refuses TCP after Stop and lets clients in
// again after Restart; Close leaves nothing running.
func TestNode(t *testing.T) {
	if _, err := Find(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v (%s=1)", err, RequireEnv)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	pki, err := devpki.Dev(dir+"/pki", "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := pki.CA.Issue("stranger", devpki.Leaf{CN: "stranger", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	began := time.Now()
	n, err := Start(ctx, Options{Dir: dir + "/node", Name: "testrabbit", PKI: pki, Users: []string{"gw-test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RabbitMQ %s booted in %v", n.Version, time.Since(began).Round(time.Millisecond))
	defer n.Close()
	tlsFor := func(cert, key string) *tls.Config {
		pem, _ := os.ReadFile(pki.CA.CertFile)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	if err := connect(t, n.URL, tlsFor(pki.Client.CertFile, pki.Client.KeyFile)); err != nil {
		t.Fatalf("gw-test refused: %v\n%s", err, n.Log())
	}
	if err := connect(t, n.URL, tlsFor(stranger.CertFile, stranger.KeyFile)); err == nil {
		t.Error("a certificate whose CN is no user was let in")
	}
	began = time.Now()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "mqtts://")); err == nil {
		c.Close()
		t.Error("the listener still accepts TCP after Stop")
	}
	stopped := time.Since(began)
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop_app took %v, start_app %v", stopped.Round(time.Millisecond), (time.Since(began) - stopped).Round(time.Millisecond))
	if err := connect(t, n.URL, tlsFor(pki.Client.CertFile, pki.Client.KeyFile)); err != nil {
		t.Fatalf("gw-test refused after Restart: %v", err)
	}
	pid := n.cmd.Process.Pid
	n.Close()
	if err := syscallKill0(pid); err == nil {
		t.Errorf("the node (pid %d) still runs after Close", pid)
	}
}

func syscallKill0(pid int) error {
	p, _ := os.FindProcess(pid)
	return p.Signal(syscall.Signal(0))
}
