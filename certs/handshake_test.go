package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
)

// peer is what the test broker saw of one connection.
type peer struct {
	cn, serial, alpn string
	err              error
}

type brokerOpts struct {
	cert       *devpki.Issued
	clientCAs  *devpki.CA
	minVersion uint16
	maxVersion uint16
	alpn       []string
}

// startBroker listens on 127.0.0.1 with TLS, requiring a client certificate
// verified by clientCAs, and reports each handshake. After a successful
// handshake it writes one byte, so that the client knows it was accepted
// (with TLS 1.3 the client finishes before the server has checked it).
func startBroker(t *testing.T, o brokerOpts) (string, <-chan peer) {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(o.cert.CertFile, o.cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(o.clientCAs.Cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{kp},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   o.minVersion,
		MaxVersion:   o.maxVersion,
		NextProtos:   o.alpn,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan peer, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c *tls.Conn) {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.Handshake(); err != nil {
					seen <- peer{err: err}
					return
				}
				cs := c.ConnectionState()
				leaf := cs.PeerCertificates[0]
				seen <- peer{cn: leaf.Subject.CommonName, serial: fmt.Sprintf("%X", leaf.SerialNumber), alpn: cs.NegotiatedProtocol}
				c.Write([]byte{'k'})
			}(c.(*tls.Conn))
		}
	}()
	return ln.Addr().String(), seen
}

// dial connects with cfg and waits for the broker's byte; it returns the
// first error on the way.
func dial(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	return nil
}

func nextPeer(t *testing.T, seen <-chan peer) peer {
	t.Helper()
	select {
	case p := <-seen:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("the broker saw no handshake")
		return peer{}
	}
}

// TestHandshake: a real mutual-TLS handshake with Store.TLSConfig; the broker
// sees the agent id, and after rotation and Reload the new serial, also
// through a tls.Config handed out before the rotation.
func TestHandshake(t *testing.T) {
	f := newFixture(t)
	f.opts.ALPN = []string{"mqtt"}
	s := mustLoad(t, f.opts)
	addr, seen := startBroker(t, brokerOpts{cert: f.pki.Server, clientCAs: f.pki.CA, alpn: []string{"mqtt"}})

	cfg, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(addr, cfg); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	p := nextPeer(t, seen)
	if p.err != nil || p.cn != agentID || p.serial != fmt.Sprintf("%X", f.pki.Client.Cert.SerialNumber) || p.alpn != "mqtt" {
		t.Fatalf("broker saw %+v", p)
	}

	next := f.issue(t, "next", devpki.Leaf{})
	replace(t, next.CertFile, f.opts.CertFile)
	replace(t, next.KeyFile, f.opts.KeyFile)
	if changed, err := s.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	want := fmt.Sprintf("%X", next.Cert.SerialNumber)
	fresh, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*tls.Config{"config from before the reload": cfg, "fresh config": fresh} {
		if err := dial(addr, c); err != nil {
			t.Fatalf("%s: handshake after rotation: %v", name, err)
		}
		if p := nextPeer(t, seen); p.err != nil || p.serial != want {
			t.Errorf("%s: broker saw %+v, want serial %s", name, p, want)
		}
	}
}

// TestHandshakeRefused: each way the broker or the client certificate can be
// wrong fails the handshake with an error that says why.
func TestHandshakeRefused(t *testing.T) {
	f := newFixture(t)
	otherCA, err := devpki.NewCA(t.TempDir(), "impostor")
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := otherCA.Issue("server", devpki.Leaf{CN: "localhost", DNS: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		broker     brokerOpts
		serverName string
		want       any // error type to errors.As, or a string
	}{
		{"broker certificate from an untrusted CA", brokerOpts{cert: impostor, clientCAs: f.pki.CA},
			"", &x509.UnknownAuthorityError{}},
		{"wrong host name", brokerOpts{cert: f.pki.Server, clientCAs: f.pki.CA},
			"broker.example.org", &x509.HostnameError{}},
		{"broker limited to TLS 1.0 and 1.1", brokerOpts{cert: f.pki.Server, clientCAs: f.pki.CA, minVersion: tls.VersionTLS10, maxVersion: tls.VersionTLS11},
			"", "protocol version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := f.opts
			opts.ServerName = tc.serverName
			s := mustLoad(t, opts)
			cfg, err := s.TLSConfig()
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := startBroker(t, tc.broker)
			err = dial(addr, cfg)
			if err == nil {
				t.Fatal("handshake succeeded")
			}
			t.Log(err)
			switch w := tc.want.(type) {
			case *x509.UnknownAuthorityError:
				if !errors.As(err, w) {
					t.Errorf("error %v is not %T", err, w)
				}
			case *x509.HostnameError:
				if !errors.As(err, w) {
					t.Errorf("error %v is not %T", err, w)
				}
			case string:
				wantAll(t, err.Error(), w)
			}
		})
	}

	t.Run("server name override accepted", func(t *testing.T) {
		opts := f.opts
		opts.ServerName = "localhost" // dialled by IP, checked by name
		cfg, err := mustLoad(t, opts).TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := startBroker(t, brokerOpts{cert: f.pki.Server, clientCAs: f.pki.CA})
		if err := dial(addr, cfg); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("client certificate expires while a config is held", func(t *testing.T) {
		clk := newClock(time.Now())
		s := loadAt(t, f.opts, clk.now)
		cfg, err := s.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		clk.set(f.pki.Client.Cert.NotAfter.Add(time.Second))
		addr, seen := startBroker(t, brokerOpts{cert: f.pki.Server, clientCAs: f.pki.CA})
		err = dial(addr, cfg)
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("dial = %v, want ErrExpired", err)
		}
		if p := nextPeer(t, seen); p.err == nil {
			t.Errorf("broker accepted %+v", p)
		}
	})
}
