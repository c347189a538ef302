package remote

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeys(t *testing.T) {
	a, b := testKey("ops").Public().(ed25519.PublicKey), testKey("ops-2").Public().(ed25519.PublicKey)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(testKey("ops"))
	if err != nil {
		t.Fatal(err)
	}
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	good := append(append([]byte("# city operations, 2026\n"), pubPEM(t, a)...), pubPEM(t, b)...)
	cases := []struct {
		name, data, err string
		n               int
	}{
		{"two keys with a comment", string(good), "", 2},
		{"one key", string(pubPEM(t, a)), "", 1},
		{"empty", "", `no PEM "PUBLIC KEY" block`, 0},
		{"ECDSA key", string(pubPEM(t, a)) + string(pubPEM(t, &ec.PublicKey)), "block 2: *ecdsa.PublicKey is not an Ed25519 key", 0},
		{"private key", string(privPEM), `block 1: type "PRIVATE KEY"`, 0},
		{"duplicate", string(pubPEM(t, a)) + string(pubPEM(t, a)), "key 2: duplicate", 0},
		{"truncated second block", string(pubPEM(t, a)) + strings.SplitAfter(string(pubPEM(t, b)), "\n")[0], "block 2: malformed PEM block", 0},
		{"bad DER", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "block 1: ", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "operators.pem")
			if err := os.WriteFile(path, []byte(c.data), 0o644); err != nil {
				t.Fatal(err)
			}
			ks, err := LoadKeys(path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err %v, want one naming %s and %q", err, path, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(ks.Keys()); got != c.n {
				t.Fatalf("%d keys, want %d", got, c.n)
			}
			id, _ := KeyID(a)
			if k, ok := ks.Lookup(id); !ok || !k.Pub.Equal(a) {
				t.Fatal("lookup by thumbprint failed")
			}
		})
	}
	if _, err := LoadKeys(filepath.Join(t.TempDir(), "missing.pem")); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestKeyIDThumbprint pins the kid to RFC 8037 appendix A.3's example
// (thumbprint of the key of A.2).
func TestKeyIDThumbprint(t *testing.T) {
	// RFC 8037 A.2: x = 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo
	pub, err := b64.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	id, err := KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; id != want {
		t.Fatalf("kid %s, want %s", id, want)
	}
}
