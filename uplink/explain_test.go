package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testbroker"
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
	client := testbroker.TLSConfig(t, pki.CA.CertFile, pki.Client.CertFile, pki.Client.KeyFile)
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
						tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
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
