package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVector signs the agent's fixture payload with the fixture key: the
// token must be byte-for-byte the one the agent's remote package accepts in
// its own test (cmd/cityedge/internal/remote/testdata/vector.json).
func TestVector(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "cityedge", "internal", "remote", "testdata", "vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Seed    string  `json:"seed"`
		Kid     bool    `json:"kid"`
		Payload payload `json:"payload"`
		Token   string  `json:"token"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	seed, err := hex.DecodeString(v.Seed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sign(ed25519.NewKeyFromSeed(seed), v.Kid, v.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if got != v.Token {
		t.Fatalf("token\n%s\nwant\n%s", got, v.Token)
	}
}

// TestKeyIDRFC8037 pins keyID to RFC 8037 appendix A.3.
func TestKeyIDRFC8037(t *testing.T) {
	pub, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got, want := keyID(pub), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("kid %s, want %s", got, want)
	}
}

func TestSignWithoutKid(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	tok, err := sign(priv, false, payload{Agent: "a", Cmd: "status", JTI: "j", IAT: 1, EXP: 2})
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(tok, ".")
	h, _ := base64.RawURLEncoding.DecodeString(p[0])
	sig, _ := base64.RawURLEncoding.DecodeString(p[2])
	if string(h) != `{"alg":"EdDSA"}` || !ed25519.Verify(priv.Public().(ed25519.PublicKey), []byte(p[0]+"."+p[1]), sig) {
		t.Fatalf("header %s, signature does not verify", h)
	}
}

func TestResolveTarget(t *testing.T) {
	cases := []struct {
		target, site, agent string
		prefix, id, err     string
	}{
		{"gw-0042", "", "", "cityedge/gw-0042", "gw-0042", ""},
		{"gw-0042", "barcelona", "", "cityedge/barcelona/gw-0042", "gw-0042", ""},
		{"cityedge/barcelona/gw-0042", "", "", "cityedge/barcelona/gw-0042", "gw-0042", ""},
		{"city/lamps/17", "", "gw-0042", "city/lamps/17", "gw-0042", ""},
		{"city/lamps/17", "x", "", "", "", "--site applies"},
		{"gw-0042", "", "gw-0043", "", "", "contradicts"},
		{"gw 42", "", "", "", "", "letters, digits"},
		{"cityedge/+/gw", "", "", "", "", "neither"},
		{"cityedge/gw/", "", "", "", "", "neither"},
		{"a/b c", "", "", "", "", "give --agent"},
	}
	for _, c := range cases {
		p, id, err := resolveTarget(c.target, c.site, c.agent)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want %q", c.target, err, c.err)
			}
			continue
		}
		if err != nil || p != c.prefix || id != c.id {
			t.Errorf("%q site %q agent %q: %q %q %v; want %q %q", c.target, c.site, c.agent, p, id, err, c.prefix, c.id)
		}
	}
}

func TestUsage(t *testing.T) {
	base := []string{"--key", "k", "--broker", "mqtts://b:8883", "--ca", "c", "--cert", "c", "--key-file", "k"}
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"no flags", []string{"gw-1", "status"}, "--key is required"},
		{"no command", append(base, "gw-1"), "want <agent-id|topic_prefix>"},
		{"unknown command", append(base, "gw-1", "reboot"), `unknown command "reboot"`},
		{"wire name is not a CLI name", append(base, "gw-1", "install_cert", "f"), "unknown command"},
		{"config without file", append(base, "gw-1", "config"), "config takes one FILE"},
		{"status with an argument", append(base, "gw-1", "status", "x"), "status takes no argument"},
		{"bad ttl", append([]string{"--ttl", "0s"}, append(base, "gw-1", "status")...), "--ttl"},
		{"keygen without out", []string{"keygen"}, "keygen --out NAME"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.name, code, errb.String(), c.msg)
		}
	}
}

func TestPlaintextBrokerRefused(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--out", filepath.Join(dir, "ops")}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	var errb bytes.Buffer
	code := run(context.Background(), []string{"--key", filepath.Join(dir, "ops.key"), "--broker", "mqtt://127.0.0.1:1883",
		"--ca", "c", "--cert", "c", "--key-file", "k", "gw-1", "status"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "plaintext") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	stem := filepath.Join(dir, "ops")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--out", stem}, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for path, mode := range map[string]os.FileMode{stem + ".key": 0o600, stem + ".pub": 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	priv, err := loadSigningKey(stem + ".key")
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(stem + ".pub")
	b, _ := pem.Decode(pubPEM)
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil || b.Type != "PUBLIC KEY" || !pub.(ed25519.PublicKey).Equal(priv.Public()) {
		t.Fatalf("public key %v (%v) does not match", b.Type, err)
	}
	if !strings.Contains(out.String(), "kid "+keyID(pub.(ed25519.PublicKey))) {
		t.Errorf("output %q does not show the kid", out.String())
	}
	if strings.Contains(out.String(), "PRIVATE") {
		t.Error("private key printed")
	}
	// Never overwrites.
	out.Reset()
	if code := run(context.Background(), []string{"keygen", "--out", stem}, &out, &out); code != exitFailed || !strings.Contains(out.String(), "exists") {
		t.Fatalf("second keygen: exit %d %s", code, out.String())
	}
	// A signing key readable by others is refused.
	if err := os.Chmod(stem+".key", 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSigningKey(stem + ".key"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key: %v", err)
	}
}

func TestBuildArgs(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "c.toml")
	os.WriteFile(toml, []byte("[agent]\nid = \"gw-1\"\n"), 0o644)
	notCert := filepath.Join(dir, "c.pem")
	os.WriteFile(notCert, []byte("hello"), 0o644)
	if a, err := buildArgs("config", toml); err != nil || string(a) != `{"toml":"[agent]\nid = \"gw-1\"\n"}` {
		t.Fatalf("config args %s %v", a, err)
	}
	if _, err := buildArgs("install_cert", notCert); err == nil {
		t.Fatal("a file without a certificate was sent")
	}
	if a, _ := buildArgs("status", ""); string(a) != "{}" {
		t.Fatalf("status args %s", a)
	}
}
