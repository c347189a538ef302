package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/jonboulle/clockwork"
)

// TestExplainServerCert: a broker certificate that does not verify is named
// with its issuer and the key to fix, not a bare "unknown authority".
func TestExplainServerCert(t *testing.T) {
	brokerCert := &x509.Certificate{}
	brokerCert.Subject.CommonName, brokerCert.Issuer.CommonName = "broker.city", "City Broker CA"
	brokerCert.DNSNames = []string{"broker.city"}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{Cert: brokerCert}},
			"the broker's certificate (CN=broker.city) is signed by CN=City Broker CA, which is not in uplink.ca_file"},
		{"wrong name", &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: brokerCert, Host: "10.0.0.5"}},
			"is for broker.city, not 10.0.0.5"},
		{"CN only", &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "b"}},
			"Go ignores a CN-only name"},
	} {
		got := explainServerCert(c.err, "")
		if got == nil || !strings.Contains(got.Error(), c.want) {
			t.Errorf("%s: %v, want it to say %q", c.name, got, c.want)
		}
	}
	if explainServerCert(errors.New("EOF"), "") != nil {
		t.Error("an unrelated error was explained as a certificate problem")
	}
}

// TestProbeNamesTheStage: a broker that accepts TCP and then never answers
// is reported with the stage reached: TCP (no TLS answer), TLS (no CONNACK).
func TestProbeNamesTheStage(t *testing.T) {
	server, client := handMadeBrokerTLS(t)
	for _, c := range []struct {
		name string
		tls  bool // the silent broker completes the handshake
		want string
	}{
		{"silent after TCP", false, "stage reached: TCP"},
		{"silent after TLS", true, "stage reached: TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					defer conn.Close()
					if c.tls {
						tc := tls.Server(conn, server)
						_ = tc.Handshake()
						defer tc.Close()
					}
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err = Probe(ctx, "mqtts://"+ln.Addr().String(), "probe", func() (*tls.Config, error) { return client, nil }, time.Second)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("probe error %v, want it to say %q", err, c.want)
			}
		})
	}
}

// TestConnectedLogsConnackDelay: a broker that holds the CONNECT (as
// RabbitMQ does while its client-id registry has no leader) and answers it
// 3 s later on the injected clock: the session's "uplink: connected" line
// says connack_after=3s, the figure the fleet test uses to date the CONNECT.
func TestConnectedLogsConnackDelay(t *testing.T) {
	server, client := handMadeBrokerTLS(t)
	url, answerAfter := holdingBroker(t, server)
	fc := clockwork.NewFakeClock()
	logs := &testlog.Buffer{}
	cfg := validConfig()
	cfg.Brokers = []string{url}
	cfg.TLSConfig = func() (*tls.Config, error) { return client, nil }
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	cfg.clock = fc
	r := start(t, cfg, newMemSource(0))
	answerAfter(fc, 3*time.Second)
	waitFor(t, 10*time.Second, "the connected line", func() bool { return len(logs.Lines(`msg="uplink: connected"`)) > 0 })
	if line := logs.Lines(`msg="uplink: connected"`)[0]; !strings.Contains(line, "connack_after=3s") {
		t.Errorf("connected line %q does not say connack_after=3s", line)
	}
	// The clean stop waits StopTimeout on the fake clock for the offline
	// status's PUBACK, which this broker never sends.
	r.cancel()
	for deadline := time.Now().Add(10 * time.Second); ; fc.Advance(time.Second) {
		select {
		case <-r.done:
			close(r.done)
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not return within 10s of cancel")
		}
	}
}

// TestProbeReportsConnackDelay: --diagnose's probe reports how long the
// broker held its CONNECT, 2 s on the injected clock.
func TestProbeReportsConnackDelay(t *testing.T) {
	server, client := handMadeBrokerTLS(t)
	url, answerAfter := holdingBroker(t, server)
	fc := clockwork.NewFakeClock()
	type result struct {
		res ProbeResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := probe(context.Background(), url, "probe", func() (*tls.Config, error) { return client, nil }, 10*time.Second, fc, nil)
		done <- result{res, err}
	}()
	answerAfter(fc, 2*time.Second)
	r := <-done
	if r.err != nil || r.res.ConnackAfter != 2*time.Second || r.res.Handshake != 0 {
		t.Fatalf("probe: %+v, %v; want ConnackAfter 2s, a handshake of 0 on the still clock, no error", r.res, r.err)
	}
}

// holdingBroker starts a hand-made MQTT broker for one connection: it
// reads the CONNECT and holds it until answerAfter(fc, d), which waits for
// that CONNECT, moves the client's fake clock d on and lets the broker
// answer CONNACK (accepted). It then reads until the client leaves and never
// acknowledges a publish.
func holdingBroker(t *testing.T, server *tls.Config) (url string, answerAfter func(fc *clockwork.FakeClock, d time.Duration)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	connected, released := make(chan struct{}), make(chan struct{})
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, server)
		r := bufio.NewReader(tc)
		if typ, err := readPacket(r); err != nil || typ != 1 {
			t.Errorf("first packet type %d, err %v; want CONNECT (1)", typ, err)
			return
		}
		close(connected)
		<-released
		if _, err := tc.Write([]byte{0x20, 0x02, 0x00, 0x00}); err != nil { // CONNACK, accepted
			return
		}
		for {
			if _, err := readPacket(r); err != nil {
				return
			}
		}
	}()
	answerAfter = func(fc *clockwork.FakeClock, d time.Duration) {
		t.Helper()
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatal("no CONNECT reached the broker")
		}
		fc.Advance(d)
		close(released)
	}
	return "mqtts://" + ln.Addr().String(), answerAfter
}

// handMadeBrokerTLS returns the TLS configurations of a hand-made broker
// (mutual TLS, as a real one) and of a client it accepts, from a fresh
// development PKI.
func handMadeBrokerTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	pki, err := devpki.Dev(t.TempDir(), "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := tls.LoadX509KeyPair(pki.Server.CertFile, pki.Server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA.Cert)
	server = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	return server, testbroker.TLSConfig(t, pki.CA.CertFile, pki.Client.CertFile, pki.Client.KeyFile)
}

// readPacket reads one MQTT control packet and returns its type.
func readPacket(r *bufio.Reader) (byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	n, err := binary.ReadUvarint(r) // MQTT's remaining length is this varint (MQTT 3.1.1 section 2.2.3)
	if err != nil {
		return 0, err
	}
	_, err = r.Discard(int(n))
	return h >> 4, err
}
