package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
)

func TestLoadValid(t *testing.T) {
	f := newFixture(t)
	s := mustLoad(t, f.opts)
	st := s.Status()
	if st.ClientSubject != "CN="+agentID {
		t.Errorf("ClientSubject = %q", st.ClientSubject)
	}
	if want := fmt.Sprintf("%X", f.pki.Client.Cert.SerialNumber); st.ClientSerial != want {
		t.Errorf("ClientSerial = %q, want %q", st.ClientSerial, want)
	}
	if !st.ClientNotAfter.Equal(f.pki.Client.Cert.NotAfter) || !st.CANotAfter.Equal(f.pki.CA.Cert.NotAfter) {
		t.Errorf("NotAfter = %v / %v", st.ClientNotAfter, st.CANotAfter)
	}
	if st.Expired || st.Warning != "" || st.LastReloadError != "" || st.LastReload.IsZero() {
		t.Errorf("fresh valid set: %+v", st)
	}
}

// TestLoadRejects: every problem other than time is a Load error that names
// the file and the cause, and says how to fix it.
func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, f *fixture) Options
		want  []string // substrings of the error; "$CA", "$CERT", "$KEY" are the paths
	}{
		{"missing CA file", func(t *testing.T, f *fixture) Options {
			os.Remove(f.opts.CAFile)
			return f.opts
		}, []string{"uplink.ca_file", "$CA", "does not exist"}},
		{"missing cert file", func(t *testing.T, f *fixture) Options {
			os.Remove(f.opts.CertFile)
			return f.opts
		}, []string{"uplink.cert_file", "$CERT", "does not exist"}},
		{"missing key file", func(t *testing.T, f *fixture) Options {
			os.Remove(f.opts.KeyFile)
			return f.opts
		}, []string{"uplink.key_file", "$KEY", "does not exist"}},
		{"key mode 0644", func(t *testing.T, f *fixture) Options {
			os.Chmod(f.opts.KeyFile, 0o644)
			return f.opts
		}, []string{"$KEY", "group or others", "0644", "chmod 600 $KEY"}},
		{"key mode 0640", func(t *testing.T, f *fixture) Options {
			os.Chmod(f.opts.KeyFile, 0o640)
			return f.opts
		}, []string{"$KEY", "group or others", "0640", "chmod 600 $KEY"}},
		{"key mode 0604", func(t *testing.T, f *fixture) Options {
			os.Chmod(f.opts.KeyFile, 0o604)
			return f.opts
		}, []string{"$KEY", "chmod 600 $KEY"}},
		{"key of another certificate", func(t *testing.T, f *fixture) Options {
			other := f.issue(t, "other", devpki.Leaf{})
			f.opts.KeyFile = other.KeyFile
			return f.opts
		}, []string{"uplink.key_file", "other.key", "does not belong to the certificate", "$CERT"}},
		{"client cert from a foreign CA", func(t *testing.T, f *fixture) Options {
			fc := foreign(t)
			f.opts.CertFile, f.opts.KeyFile = fc.CertFile, fc.KeyFile
			return f.opts
		}, []string{"uplink.cert_file", "CN=foreign", "not a CA in uplink.ca_file $CA"}},
		{"server certificate used as client certificate", func(t *testing.T, f *fixture) Options {
			f.opts.CertFile, f.opts.KeyFile = f.pki.Server.CertFile, f.pki.Server.KeyFile
			return f.opts
		}, []string{"uplink.cert_file", "server.pem", "client authentication"}},
		{"CA certificate as client certificate", func(t *testing.T, f *fixture) Options {
			f.opts.CertFile, f.opts.KeyFile = f.pki.CA.CertFile, f.pki.CA.KeyFile
			return f.opts
		}, []string{"uplink.cert_file", "is a CA certificate"}},
		{"garbage cert file", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.CertFile, []byte("hello, I am not a certificate\n"), 0o644)
			return f.opts
		}, []string{"uplink.cert_file", "$CERT", "no certificate"}},
		{"empty CA file", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.CAFile, nil, 0o644)
			return f.opts
		}, []string{"uplink.ca_file", "$CA", "no certificate"}},
		{"truncated cert file", func(t *testing.T, f *fixture) Options {
			b := mustRead(t, f.opts.CertFile)
			write(t, f.opts.CertFile, b[:len(b)/2], 0o644)
			return f.opts
		}, []string{"uplink.cert_file", "$CERT", "malformed or truncated"}},
		{"truncated second certificate in CA bundle", func(t *testing.T, f *fixture) Options {
			b := mustRead(t, f.opts.CAFile)
			write(t, f.opts.CAFile, append(b, b[:len(b)-30]...), 0o644)
			return f.opts
		}, []string{"uplink.ca_file", "$CA", "malformed or truncated"}},
		{"corrupt certificate body", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), 0o644)
			return f.opts
		}, []string{"uplink.cert_file", "$CERT", "cannot be parsed"}},
		{"DER cert file", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.CertFile, f.pki.Client.Cert.Raw, 0o644)
			return f.opts
		}, []string{"uplink.cert_file", "$CERT", "DER", "openssl x509 -inform der"}},
		{"private key in CA file", func(t *testing.T, f *fixture) Options {
			b := append(mustRead(t, f.opts.CAFile), mustRead(t, f.pki.CA.KeyFile)...)
			write(t, f.opts.CAFile, b, 0o644)
			return f.opts
		}, []string{"uplink.ca_file", "$CA", "private key"}},
		{"private key in cert file", func(t *testing.T, f *fixture) Options {
			b := append(mustRead(t, f.opts.CertFile), mustRead(t, f.opts.KeyFile)...)
			write(t, f.opts.CertFile, b, 0o644)
			return f.opts
		}, []string{"uplink.cert_file", "$CERT", "private key"}},
		{"CSR instead of certificate", func(t *testing.T, f *fixture) Options {
			csr := filepath.Join(f.dir, "gw.csr")
			if err := enroll(filepath.Join(f.dir, "new.key"), csr, agentID, nil); err != nil {
				t.Fatal(err)
			}
			f.opts.CertFile = csr
			return f.opts
		}, []string{"uplink.cert_file", "gw.csr", "signing request"}},
		{"passphrase-protected key", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}), 0o600)
			return f.opts
		}, []string{"uplink.key_file", "$KEY", "passphrase"}},
		{"empty key file", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.KeyFile, nil, 0o600)
			return f.opts
		}, []string{"uplink.key_file", "$KEY", "no private key"}},
		{"corrupt key", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), 0o600)
			return f.opts
		}, []string{"uplink.key_file", "$KEY", "cannot be parsed"}},
		{"key path is a directory", func(t *testing.T, f *fixture) Options {
			f.opts.KeyFile = t.TempDir()
			return f.opts
		}, []string{"uplink.key_file", "not a regular file"}},
		{"CA file writable by everyone", func(t *testing.T, f *fixture) Options {
			os.Chmod(f.opts.CAFile, 0o666)
			return f.opts
		}, []string{"uplink.ca_file", "$CA", "writable by everyone", "chmod 644 $CA"}},
		{"oversized CA file", func(t *testing.T, f *fixture) Options {
			write(t, f.opts.CAFile, make([]byte, maxFileSize+1), 0o644)
			return f.opts
		}, []string{"uplink.ca_file", "$CA", "right file"}},
		{"key file not set", func(t *testing.T, f *fixture) Options {
			f.opts.KeyFile = ""
			return f.opts
		}, []string{"uplink.key_file is not set"}},
		{"cert and key in one file", func(t *testing.T, f *fixture) Options {
			f.opts.CertFile = f.opts.KeyFile
			return f.opts
		}, []string{"uplink.cert_file and uplink.key_file", "$KEY"}},
		{"empty ALPN name", func(t *testing.T, f *fixture) Options {
			f.opts.ALPN = []string{"mqtt", ""}
			return f.opts
		}, []string{"uplink.alpn"}},
		{"negative warning threshold", func(t *testing.T, f *fixture) Options {
			f.opts.WarnBefore = -time.Hour
			return f.opts
		}, []string{"negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ca, cert, key := f.opts.CAFile, f.opts.CertFile, f.opts.KeyFile
			opts := tc.setup(t, f)
			s, err := Load(opts)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want an error", s.Status())
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range tc.want {
				w = strings.NewReplacer("$CA", ca, "$CERT", cert, "$KEY", key).Replace(w)
				wantAll(t, msg, w)
			}
			noKeyMaterial(t, msg, key, f.pki.CA.KeyFile, f.pki.Server.KeyFile)
		})
	}
}

// TestLoadKeyOwner: a key owned by someone other than the running user is
// refused with a chown hint. As root the file is really given away; otherwise
// the store is told it runs as another user.
func TestLoadKeyOwner(t *testing.T) {
	f := newFixture(t)
	e := env{now: time.Now, euid: os.Geteuid()}
	owner := os.Geteuid()
	if os.Geteuid() == 0 {
		owner = 4242
		if err := os.Chown(f.opts.KeyFile, owner, -1); err != nil {
			t.Fatal(err)
		}
	} else {
		e.euid = os.Geteuid() + 1
	}
	_, err := load(f.opts, e)
	if err == nil {
		t.Fatal("key owned by another user was accepted")
	}
	wantAll(t, err.Error(), "uplink.key_file", f.opts.KeyFile, "owned by "+userName(owner),
		"chown "+userName(e.euid)+" "+f.opts.KeyFile)
}

// TestLoadOutOfDates: an expired or not yet valid client certificate does not
// stop Load (sampling must run), but TLSConfig refuses it until a valid set
// arrives; Status says why.
func TestLoadOutOfDates(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name     string
		leaf     devpki.Leaf
		sentinel error
		want     string
	}{
		{"expired", devpki.Leaf{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, ErrExpired, "expired on"},
		{"not yet valid", devpki.Leaf{NotBefore: now.Add(time.Hour), NotAfter: now.AddDate(1, 0, 0)}, ErrNotYetValid, "valid only from"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.leaf.CN, tc.leaf.Client = agentID, true
			iss := f.issue(t, "dated", tc.leaf)
			f.opts.CertFile, f.opts.KeyFile = iss.CertFile, iss.KeyFile
			s := mustLoad(t, f.opts)
			cfg, err := s.TLSConfig()
			if cfg != nil || !errors.Is(err, tc.sentinel) {
				t.Fatalf("TLSConfig = %v, %v; want nil and %v", cfg, err, tc.sentinel)
			}
			wantAll(t, err.Error(), "uplink.cert_file", iss.CertFile, "CN="+agentID, tc.want)
			if _, err := s.clientCertificate(nil); !errors.Is(err, tc.sentinel) {
				t.Errorf("GetClientCertificate err = %v, want %v", err, tc.sentinel)
			}
			st := s.Status()
			if !st.Expired || !strings.Contains(st.Warning, tc.want) {
				t.Errorf("Status = %+v; want Expired and a warning saying %q", st, tc.want)
			}

			// A valid set arriving later is taken and makes the uplink usable.
			good := f.issue(t, "good", devpki.Leaf{})
			replace(t, good.CertFile, f.opts.CertFile)
			replace(t, good.KeyFile, f.opts.KeyFile)
			if changed, err := s.Reload(); err != nil || !changed {
				t.Fatalf("Reload of a valid set = %v, %v", changed, err)
			}
			if _, err := s.TLSConfig(); err != nil {
				t.Errorf("TLSConfig after a valid set arrived: %v", err)
			}
			if st := s.Status(); st.Expired || st.Warning != "" {
				t.Errorf("Status after a valid set arrived = %+v", st)
			}
		})
	}
}

// TestClockWithoutRTC: a gateway booting with its clock in 1970 loads its
// certificates, refuses to use them, and uses them once NTP set the clock,
// without a reload.
func TestClockWithoutRTC(t *testing.T) {
	f := newFixture(t)
	clk := newClock(time.Unix(0, 0))
	s := loadAt(t, f.opts, clk.now)
	_, err := s.TLSConfig()
	if !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("TLSConfig at 1970: %v, want ErrNotYetValid", err)
	}
	wantAll(t, err.Error(), "clock", "1970-01-01")
	clk.set(time.Now())
	if _, err := s.TLSConfig(); err != nil {
		t.Fatalf("TLSConfig after the clock was set: %v", err)
	}
	// Past the CA's end the chain is unusable, and the message names the CA.
	clk.set(f.pki.CA.Cert.NotAfter.Add(time.Hour))
	_, err = s.TLSConfig()
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("TLSConfig after everything expired: %v", err)
	}
}

func TestCAExpiryReported(t *testing.T) {
	f := newFixture(t)
	// The client certificate outlives nothing: issue it to the CA's end so that
	// only the CA is out of date at the chosen time.
	iss := f.issue(t, "long", devpki.Leaf{CN: agentID, Client: true, NotAfter: f.pki.CA.Cert.NotAfter.Add(48 * time.Hour)})
	f.opts.CertFile, f.opts.KeyFile = iss.CertFile, iss.KeyFile
	clk := newClock(f.pki.CA.Cert.NotAfter.Add(time.Hour))
	s := loadAt(t, f.opts, clk.now)
	_, err := s.TLSConfig()
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("TLSConfig: %v, want ErrExpired", err)
	}
	wantAll(t, err.Error(), "uplink.ca_file", f.opts.CAFile, "CA certificate CN=ca")
}

func TestTLSConfig(t *testing.T) {
	f := newFixture(t)
	f.opts.ServerName = "broker.example.org"
	f.opts.ALPN = []string{"mqtt", "x-amzn-mqtt-ca"}
	s := mustLoad(t, f.opts)
	f.opts.ALPN[0] = "mutated" // the store must have kept its own copy
	cfg, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if cfg.InsecureSkipVerify || cfg.VerifyPeerCertificate != nil || cfg.VerifyConnection != nil {
		t.Error("verification is altered")
	}
	caOnly := x509.NewCertPool()
	caOnly.AddCert(f.pki.CA.Cert)
	if !cfg.RootCAs.Equal(caOnly) {
		t.Error("RootCAs is not exactly the configured CA bundle")
	}
	if cfg.ServerName != "broker.example.org" {
		t.Errorf("ServerName = %q", cfg.ServerName)
	}
	if !slices.Equal(cfg.NextProtos, []string{"mqtt", "x-amzn-mqtt-ca"}) {
		t.Errorf("NextProtos = %q", cfg.NextProtos)
	}
	if len(cfg.Certificates) != 0 || cfg.GetClientCertificate == nil {
		t.Fatal("the client certificate must come from GetClientCertificate")
	}
	c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.Equal(f.pki.Client.Cert) {
		t.Errorf("GetClientCertificate returned %s", c.Leaf.Subject)
	}
	// A caller adding to the pool must not widen the store's trust.
	cfg.RootCAs.AddCert(f.pki.Server.Cert)
	cfg2, _ := s.TLSConfig()
	if !cfg2.RootCAs.Equal(caOnly) {
		t.Error("a caller's change to RootCAs leaked into the store")
	}
}

func TestTLSConfigSystemRoots(t *testing.T) {
	sys, err := x509.SystemCertPool()
	if err != nil {
		if os.Getenv("CITYEDGE_REQUIRE_SYSTEM_ROOTS") == "1" {
			t.Fatalf("no system root store (CITYEDGE_REQUIRE_SYSTEM_ROOTS=1): apt-get install ca-certificates: %v", err)
		}
		t.Skipf("SKIP: no system root store (apt-get install ca-certificates): %v", err)
	}
	f := newFixture(t)
	f.opts.SystemRoots = true
	s := mustLoad(t, f.opts)
	cfg, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	sys.AddCert(f.pki.CA.Cert)
	if !cfg.RootCAs.Equal(sys) {
		t.Error("RootCAs is not the system roots plus the CA bundle")
	}
}

func TestDaysLeft(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)
	day := 24 * time.Hour
	cases := []struct {
		t    time.Time
		want int
	}{
		{now, 0},
		{now.Add(time.Second), 0},
		{now.Add(day - time.Nanosecond), 0},
		{now.Add(day), 1},
		{now.Add(30*day - time.Second), 29},
		{now.Add(-time.Nanosecond), -1},
		{now.Add(-day), -1},
		{now.Add(-day - time.Second), -2},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), 2912383}, // beyond what time.Duration holds
		{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), -739676},
	}
	for _, tc := range cases {
		if got := daysLeft(tc.t, now); got != tc.want {
			t.Errorf("daysLeft(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

// TestStatusExpiry checks days left and warnings against a client certificate
// with a known end, seen from a fixed moment.
func TestStatusExpiry(t *testing.T) {
	f := newFixture(t)
	day := 24 * time.Hour
	// Seen from 100 days before the CA's end.
	base := f.pki.CA.Cert.NotAfter.Add(-100 * day).Truncate(time.Second)
	cases := []struct {
		name       string
		notAfter   time.Duration // after base
		warnBefore time.Duration
		clientDays int
		warn       []string // substrings of Warning; nil means no warning
	}{
		{"far from expiry", 60*day + time.Hour, 0, 60, nil},
		{"inside default threshold", 10*day + time.Hour, 0, 10, []string{"client certificate CN=" + agentID + " expires in 10 days"}},
		{"just under ten days", 10*day - time.Second, 0, 9, []string{"expires in 9 days"}},
		{"custom threshold not reached", 10*day + time.Hour, 5 * day, 10, nil},
		{"CA inside custom threshold", 99 * day, 120 * day, 99, []string{"expires in 99 days", "CA certificate CN=ca,O=cityedge development expires in 100 days", "uplink.ca_file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iss := f.issue(t, "c"+strings.ReplaceAll(tc.name, " ", "-"), devpki.Leaf{CN: agentID, Client: true,
				NotBefore: base.Add(-time.Hour), NotAfter: base.Add(tc.notAfter)})
			opts := f.opts
			opts.CertFile, opts.KeyFile, opts.WarnBefore = iss.CertFile, iss.KeyFile, tc.warnBefore
			s := loadAt(t, opts, func() time.Time { return base })
			st := s.Status()
			if st.ClientDaysLeft != tc.clientDays || st.CADaysLeft != 100 {
				t.Errorf("days left = %d / %d, want %d / 100", st.ClientDaysLeft, st.CADaysLeft, tc.clientDays)
			}
			if st.Expired {
				t.Error("Expired set on a valid certificate")
			}
			if tc.warn == nil && st.Warning != "" {
				t.Errorf("unexpected warning %q", st.Warning)
			}
			wantAll(t, st.Warning, tc.warn...)
		})
	}
}

// TestParseKeyForms: the key forms an operator's recipe produces are read;
// a refused form says which openssl command converts it.
func TestParseKeyForms(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	// `openssl ecparam -name prime256v1 -genkey` writes the curve's OID
	// (1.2.840.10045.3.1.7) in an EC PARAMETERS block before the key.
	params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"PKCS#8", pemOf("PRIVATE KEY", pkcs8), ""},
		{"SEC 1", pemOf("EC PRIVATE KEY", sec1), ""},
		{"openssl ecparam -genkey (EC PARAMETERS first)", append(pemOf("EC PARAMETERS", params), pemOf("EC PRIVATE KEY", sec1)...), ""},
		{"unknown block", pemOf("DSA PRIVATE KEY", []byte{0x30, 0x00}), "openssl pkey -in KEY -out KEY.pkcs8"},
		{"damaged key", pemOf("EC PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01, 0x01}), "openssl pkey -in KEY -out KEY.pkcs8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := parsePrivateKey(c.data)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !ec.PublicKey.Equal(k.Public()) {
					t.Fatal("parsed a different key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, c.wantErr)
			}
		})
	}
}
