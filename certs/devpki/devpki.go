// Package devpki creates throwaway public-key infrastructure for development
// and tests: a CA, a broker certificate for localhost, and client certificates,
// all P-256. It is used by `make demo` (through cmd/devbroker) and by tests;
// production gateways get their certificates from the city's PKI.
//
// Keys are written with mode 0600. Nothing here is meant to be secret beyond
// the life of a demo or a test.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority whose certificate is at CertFile.
type CA struct {
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	CertFile string
	KeyFile  string
	dir      string
}

// Leaf describes a certificate to issue. Zero times mean "valid from an hour
// ago for a year".
type Leaf struct {
	CN        string
	DNS       []string
	IPs       []net.IP
	Server    bool // extended key usage serverAuth
	Client    bool // extended key usage clientAuth
	NotBefore time.Time
	NotAfter  time.Time
}

// Issued is a certificate and key written to disk.
type Issued struct {
	Cert     *x509.Certificate
	CertFile string
	KeyFile  string
}

// NewCA creates a self-signed CA named name in dir (name.pem, name.key).
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"cityedge development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(2, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, Key: key, dir: dir,
		CertFile: filepath.Join(dir, name+".pem"), KeyFile: filepath.Join(dir, name+".key")}
	if err := writeCert(ca.CertFile, der); err != nil {
		return nil, err
	}
	if err := writeKey(ca.KeyFile, key); err != nil {
		return nil, err
	}
	return ca, nil
}

// Issue signs a new certificate described by l and writes name.pem and
// name.key beside the CA.
func (ca *CA) Issue(name string, l Leaf) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if l.NotBefore.IsZero() {
		l.NotBefore = now.Add(-time.Hour)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = now.AddDate(1, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.CN},
		DNSNames:     l.DNS,
		IPAddresses:  l.IPs,
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	out := &Issued{Cert: cert, CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+".key")}
	if err := writeCert(out.CertFile, der); err != nil {
		return nil, err
	}
	if err := writeKey(out.KeyFile, key); err != nil {
		return nil, err
	}
	return out, nil
}

// CRL writes a certificate revocation list naming the revoked certificates to
// name.crl beside the CA and returns its path (for mosquitto's crlfile).
func (ca *CA) CRL(name string, revoked ...*x509.Certificate) (string, error) {
	now := time.Now()
	tmpl := &x509.RevocationList{Number: serial(), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 1, 0)}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return "", err
	}
	path := filepath.Join(ca.dir, name+".crl")
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}

// Set is a complete development PKI: one CA, a broker certificate valid for
// localhost, 127.0.0.1 and ::1, and one client certificate.
type Set struct {
	CA     *CA
	Server *Issued
	Client *Issued
}

// Dev creates a development PKI in dir with a client certificate whose common
// name is clientCN (the agent id).
func Dev(dir, clientCN string) (*Set, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := NewCA(dir, "ca")
	if err != nil {
		return nil, fmt.Errorf("devpki: CA: %w", err)
	}
	srv, err := ca.Issue("server", Leaf{CN: "localhost", DNS: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true})
	if err != nil {
		return nil, fmt.Errorf("devpki: server certificate: %w", err)
	}
	cli, err := ca.Issue("client", Leaf{CN: clientCN, Client: true})
	if err != nil {
		return nil, fmt.Errorf("devpki: client certificate: %w", err)
	}
	return &Set{CA: ca, Server: srv, Client: cli}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writeCert(path string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
