package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

const testAgent = "gw-0042"

var testNow = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// testKey derives a fixed Ed25519 key from a name, so failures reproduce.
func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("cityedge remote test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compact builds a compact JWS by hand (header and payload as given, signed
// with priv over the RFC 7515 signing input); nil priv leaves the
// signature empty.
func compact(t testing.TB, header any, payload []byte, priv ed25519.PrivateKey) string {
	t.Helper()
	h, ok := header.([]byte)
	if !ok {
		h = mustJSON(t, header)
	}
	in := enc(h) + "." + enc(payload)
	if priv == nil {
		return in + "."
	}
	return in + "." + enc(ed25519.Sign(priv, []byte(in)))
}

// payload returns a valid payload for testAgent at testNow, changed by mods.
func payload(mods ...func(*Payload)) Payload {
	p := Payload{Agent: testAgent, Cmd: CmdStatus, JTI: "jti-1", IAT: testNow.Unix(), EXP: testNow.Add(5 * time.Minute).Unix(),
		Args: json.RawMessage(`{}`)}
	for _, m := range mods {
		m(&p)
	}
	return p
}

func signed(t testing.TB, priv ed25519.PrivateKey, p Payload) string {
	return compact(t, map[string]string{"alg": "EdDSA"}, mustJSON(t, p), priv)
}

// rig is a dispatcher with fake handlers that record what ran.
type rig struct {
	d     *Dispatcher
	clock *clockwork.FakeClock
	dir   string
	keys  *KeySet

	mu  sync.Mutex
	ran []*Command
}

func newRig(t testing.TB, dir string, mods ...func(*Options)) *rig {
	t.Helper()
	ks, err := NewKeySet(testKey("ops").Public().(ed25519.PublicKey), testKey("ops-2").Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = t.TempDir()
	}
	r := &rig{clock: clockwork.NewFakeClockAt(testNow), dir: dir, keys: ks}
	opts := Options{AgentID: testAgent, Keys: ks, MaxAge: 10 * time.Minute, StateDir: dir, Clock: r.clock}
	for _, m := range mods {
		m(&opts)
	}
	r.d, err = NewDispatcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CmdStatus, CmdDiagnose, CmdConfig} {
		if err := r.d.Register(name, func(ctx context.Context, c *Command) (any, error) {
			r.mu.Lock()
			r.ran = append(r.ran, c)
			r.mu.Unlock()
			return map[string]string{"ran": c.Cmd}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rig) handled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ran)
}

func (r *rig) replayFile(t testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join(r.dir, ReplayFile))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

func decodeResult(t testing.TB, b []byte) Result {
	t.Helper()
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return res
}
