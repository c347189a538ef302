package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseCSR(t *testing.T, data []byte) *x509.CertificateRequest {
	t.Helper()
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not a single PEM CSR:\n%s", data)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	return csr
}

// TestEnroll: a 0600 P-256 key and a self-signed CSR with CN = agent id, to a
// file or to stdout; the key never appears in the output; the CSR's key is
// the file's key; nothing but the two files is left in the directory.
func TestEnroll(t *testing.T) {
	for _, toStdout := range []bool{false, true} {
		name := "csr file"
		if toStdout {
			name = "stdout"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			keyFile, csrFile := filepath.Join(dir, "client.key"), filepath.Join(dir, "client.csr")
			var out bytes.Buffer
			target := csrFile
			if toStdout {
				target = "-"
			}
			if err := enroll(keyFile, target, agentID, &out); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode %04o, want 0600", fi.Mode().Perm())
			}
			key, err := parsePrivateKey(mustRead(t, keyFile))
			if err != nil {
				t.Fatal(err)
			}
			ec, ok := key.(*ecdsa.PrivateKey)
			if !ok || ec.Curve != elliptic.P256() {
				t.Fatalf("key is %T, want ECDSA P-256", key)
			}
			var csrPEM []byte
			if toStdout {
				csrPEM = out.Bytes()
			} else {
				if out.Len() != 0 {
					t.Errorf("stdout not empty: %q", out.String())
				}
				csrPEM = mustRead(t, csrFile)
			}
			csr := parseCSR(t, csrPEM)
			if csr.Subject.CommonName != agentID {
				t.Errorf("CSR CN = %q", csr.Subject.CommonName)
			}
			if !ec.PublicKey.Equal(csr.PublicKey) {
				t.Error("the CSR is not for the written key")
			}
			noKeyMaterial(t, out.String(), keyFile)
			noKeyMaterial(t, string(csrPEM), keyFile)
			entries, _ := os.ReadDir(dir)
			want := 2
			if toStdout {
				want = 1
			}
			if len(entries) != want {
				t.Errorf("directory holds %d entries, want %d (temporary files left?)", len(entries), want)
			}
		})
	}
}

// TestEnrollThenLoad: the enrolled key and a certificate the CA signs from the
// CSR load as a valid set: enrollment round trip.
func TestEnrollThenLoad(t *testing.T) {
	f := newFixture(t)
	keyFile, csrFile := filepath.Join(f.dir, "enrolled.key"), filepath.Join(f.dir, "enrolled.csr")
	if err := Enroll(keyFile, csrFile, agentID); err != nil {
		t.Fatal(err)
	}
	csr := parseCSR(t, mustRead(t, csrFile))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242),
		Subject:      pkix.Name{CommonName: csr.Subject.CommonName},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().AddDate(0, 0, 90),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.pki.CA.Cert, csr.PublicKey, f.pki.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(f.dir, "enrolled.pem")
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	f.opts.CertFile, f.opts.KeyFile = certFile, keyFile
	s := mustLoad(t, f.opts)
	if st := s.Status(); st.ClientSerial != "1092" || st.ClientSubject != "CN="+agentID {
		t.Errorf("Status = %+v", st)
	}
}

func TestEnrollRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "client.key")
	write(t, existing, []byte("the gateway's identity\n"), 0o600)
	cases := []struct {
		name, key, csr, cn string
		want               []string
	}{
		{"existing key", existing, filepath.Join(dir, "x.csr"), agentID, []string{existing, "already exists", "mv " + existing, "openssl req -new -key " + existing}},
		{"existing key through a dangling symlink", filepath.Join(dir, "link.key"), "-", agentID, []string{"link.key", "already exists"}},
		{"empty id", filepath.Join(dir, "a.key"), "-", "", []string{"agent id", "empty"}},
		{"id too long", filepath.Join(dir, "a.key"), "-", strings.Repeat("g", 65), []string{"longer than the 64 bytes"}},
		{"CSR onto the key", filepath.Join(dir, "a.key"), filepath.Join(dir, "a.key"), agentID, []string{"both be written"}},
		{"missing directory", filepath.Join(dir, "nope", "a.key"), "-", agentID, []string{filepath.Join(dir, "nope", "a.key")}},
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "link.key")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := enroll(tc.key, tc.csr, tc.cn, &out)
			if err == nil {
				t.Fatal("enroll succeeded")
			}
			t.Log(err)
			wantAll(t, err.Error(), tc.want...)
			if out.Len() != 0 {
				t.Errorf("wrote %q to stdout", out.String())
			}
		})
	}
	if got := string(mustRead(t, existing)); got != "the gateway's identity\n" {
		t.Errorf("existing key changed to %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.key")); err == nil {
		t.Error("a refused enrollment left a key behind")
	}
}

// TestEnrollCSRFailureRemovesKey: when the CSR cannot be written, the new key
// is removed again so that enrollment can be rerun.
func TestEnrollCSRFailureRemovesKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "client.key")
	err := enroll(keyFile, filepath.Join(dir, "missing-dir", "client.csr"), agentID, nil)
	if err == nil {
		t.Fatal("enroll succeeded without a place for the CSR")
	}
	wantAll(t, err.Error(), "write CSR", "removed again")
	if _, err := os.Lstat(keyFile); err == nil {
		t.Error("the key was left behind")
	}
}

// TestWriteAtomicNoClobber: the hard-link step refuses a file that appeared
// after the first check, and leaves no temporary file.
func TestWriteAtomicNoClobber(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	write(t, path, []byte("old"), 0o600)
	err := writeAtomic(path, []byte("new"), 0o600, true)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("writeAtomic over an existing file = %v", err)
	}
	if got := string(mustRead(t, path)); got != "old" {
		t.Errorf("file now holds %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries left in the directory, want 1", len(entries))
	}
}
