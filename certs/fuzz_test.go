package certs

import (
	"encoding/pem"
	"testing"

	"github.com/cityedge/cityedge/certs/devpki"
)

// FuzzParsePEM feeds arbitrary file contents to the two parsers of file
// input: neither may panic, and a success must deliver what it promises.
func FuzzParsePEM(f *testing.F) {
	set, err := devpki.Dev(f.TempDir(), agentID)
	if err != nil {
		f.Fatal(err)
	}
	ca, cert, key := mustRead(f, set.CA.CertFile), mustRead(f, set.Client.CertFile), mustRead(f, set.Client.KeyFile)
	seeds := [][]byte{
		ca, cert, key,
		append(append([]byte{}, cert...), ca...),                     // chain
		append(append([]byte("# comment\n"), ca...), "\ntrailer"...), // bundle with text
		append(append([]byte{}, cert...), key...),                    // combined file
		cert[:len(cert)/2],  // truncated
		set.Client.Cert.Raw, // DER
		pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x80}}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{0x30, 0x03, 2, 1, 0}}),
		[]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
		[]byte("-----BEGIN -----BEGIN CERTIFICATE-----"),
		{},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCertificates(data)
		if err == nil {
			if len(certs) == 0 {
				t.Fatal("parseCertificates: no error and no certificate")
			}
			for _, c := range certs {
				if c == nil || len(c.Raw) == 0 {
					t.Fatal("parseCertificates: empty certificate")
				}
			}
		} else if certs != nil {
			t.Fatal("parseCertificates: certificates with an error")
		}
		k, err := parsePrivateKey(data)
		if (err == nil) == (k == nil) {
			t.Fatalf("parsePrivateKey = %v, %v", k, err)
		}
		if err == nil && k.Public() == nil {
			t.Fatal("parsePrivateKey: key without a public key")
		}
	})
}
