package remote

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var updateVector = flag.Bool("update", false, "rewrite testdata/vector.json")

// vector is a signed command fixture shared with cityedge-ctl's tests: the
// tool must produce exactly this token from the same key and payload, and
// the agent must accept it.
type vector struct {
	Seed    string  `json:"seed"` // Ed25519 seed, hex
	Kid     bool    `json:"kid"`
	Payload Payload `json:"payload"`
	Token   string  `json:"token"`
}

func TestVector(t *testing.T) {
	path := filepath.Join("testdata", "vector.json")
	priv := testKey("ops")
	want := vector{Seed: hex.EncodeToString(priv.Seed()), Kid: true, Payload: payload(func(p *Payload) {
		p.Cmd = CmdConfig
		p.JTI = "3f1c0de5a1b2c3d4e5f60718293a4b5c"
		p.Args = json.RawMessage(`{"toml":"[agent]\nid = \"gw-0042\"\n"}`)
	})}
	kid, _ := KeyID(priv.Public().(ed25519.PublicKey))
	want.Token = compact(t, map[string]string{"alg": "EdDSA", "kid": kid}, mustJSON(t, want.Payload), priv)
	if *updateVector {
		b, _ := json.MarshalIndent(want, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got vector
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Token != want.Token {
		t.Fatalf("%s token differs from the one built here (go test -update rewrites it)", path)
	}
	r := newRig(t, "")
	r.clock.Advance(30 * time.Second)
	ans, _ := r.d.Handle(context.Background(), []byte(got.Token))
	if !decodeResult(t, ans).OK || r.handled() != 1 || r.ran[0].KeyID != kid {
		t.Fatalf("vector not accepted: %s", ans)
	}
}
