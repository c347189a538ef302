package certs

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
)

// TestInstall: a valid pair elsewhere becomes live and the files the store
// follows; every invalid one changes nothing.
func TestInstall(t *testing.T) {
	f := newFixture(t)
	other := f.issue(t, "other", devpki.Leaf{})
	expired := f.issue(t, "expired", devpki.Leaf{CN: agentID, Client: true,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	alien := foreign(t)
	cases := []struct {
		name, cert, key, want string
	}{
		{"key of another certificate", other.CertFile, f.pki.Client.KeyFile, "does not belong"},
		{"foreign CA", alien.CertFile, alien.KeyFile, "uplink.cert_file"},
		{"expired", expired.CertFile, expired.KeyFile, "expired"},
		{"missing", other.CertFile + ".nope", other.KeyFile, "no such file"},
		{"same file", other.CertFile, other.CertFile, "both name"},
	}
	s, err := Load(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	before := s.Status().ClientSerial
	for _, c := range cases {
		err := s.Install(c.cert, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Install error %v, want one containing %q", c.name, err, c.want)
		}
		if got := s.Status().ClientSerial; got != before {
			t.Fatalf("%s: live serial changed to %s", c.name, got)
		}
	}
	if err := s.Install(other.CertFile, other.KeyFile); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Status().ClientSerial, fmt.Sprintf("%X", other.Cert.SerialNumber); got != want {
		t.Fatalf("serial after install %s, want %s", got, want)
	}
	if _, cert, key := s.files(); cert != other.CertFile || key != other.KeyFile {
		t.Fatalf("store follows %s %s after install", cert, key)
	}
	// Reload now reads the installed files, not the configured ones.
	if changed, err := s.Reload(); err != nil || changed {
		t.Fatalf("reload after install: changed %v, err %v", changed, err)
	}
}
