package remote

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestAccepted(t *testing.T) {
	r := newRig(t, "")
	tok := signed(t, testKey("ops"), payload(func(p *Payload) { p.Args = json.RawMessage(`{"x":1}`) }))
	ans, pub := r.d.Handle(context.Background(), []byte(tok))
	if !pub {
		t.Fatal("accepted command not answered")
	}
	res := decodeResult(t, ans)
	if !res.OK || res.JTI != "jti-1" || res.Cmd != CmdStatus || res.Error != "" || res.Reason != "" ||
		string(res.Result) != `{"ran":"status"}` || !res.Time.Equal(testNow) {
		t.Fatalf("answer %s", ans)
	}
	if r.handled() != 1 {
		t.Fatalf("handled %d commands, want 1", r.handled())
	}
	c := r.ran[0]
	wantKid, _ := KeyID(testKey("ops").Public().(ed25519.PublicKey))
	if c.KeyID != wantKid || string(c.Args) != `{"x":1}` || !c.IssuedAt.Equal(testNow) || c.Agent != testAgent {
		t.Fatalf("command %+v", c)
	}
	if !r.d.ReplayStore().Seen("jti-1") {
		t.Fatal("jti not remembered")
	}
	if s := r.d.Stats(); s.Accepted != 1 || s.Failed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestAcceptedGoJoseSigner checks interoperability with go-jose's own
// signer, kid included.
func TestAcceptedGoJoseSigner(t *testing.T) {
	r := newRig(t, "")
	priv := testKey("ops-2")
	kid, _ := KeyID(priv.Public().(ed25519.PublicKey))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(mustJSON(t, payload()))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := r.d.Handle(context.Background(), []byte(tok))
	if res := decodeResult(t, ans); !res.OK || r.handled() != 1 || r.ran[0].KeyID != kid {
		t.Fatalf("answer %s", ans)
	}
}

func TestArgsDefault(t *testing.T) {
	for _, args := range []string{"", "null"} {
		r := newRig(t, "")
		tok := signed(t, testKey("ops"), payload(func(p *Payload) { p.Args = json.RawMessage(args) }))
		r.d.Handle(context.Background(), []byte(tok))
		if r.handled() != 1 || string(r.ran[0].Args) != "{}" {
			t.Fatalf("args %q: handled %d", args, r.handled())
		}
	}
}

// TestRejected is the forged and replayed variants: each is rejected with
// its reason, nothing runs, and the replay store does not change.
func TestRejected(t *testing.T) {
	ops, other := testKey("ops"), testKey("intruder")
	opsPub := ops.Public().(ed25519.PublicKey)
	opsKid, _ := KeyID(opsPub)
	otherKid, _ := KeyID(other.Public().(ed25519.PublicKey))
	good := payload()
	goodJSON := mustJSON(t, good)
	edHdr := map[string]string{"alg": "EdDSA"}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withSig := func(hdr map[string]string, sign func(in []byte) []byte) string {
		in := enc(mustJSON(t, hdr)) + "." + enc(goodJSON)
		return in + "." + enc(sign([]byte(in)))
	}
	hmacWith := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	valid := signed(t, ops, good)
	parts := strings.Split(valid, ".")
	other2 := signed(t, ops, payload(func(p *Payload) { p.JTI = "jti-2" }))

	flat := `{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`
	general := `{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] +
		`"},{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`
	// Another base64url character of the signature (a bit flip could leave
	// the alphabet, and the rejection would be for another reason).
	flipped := []byte(valid)
	if i := len(flipped) - 5; flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}

	cases := []struct {
		name   string
		raw    string
		reason Reason
		answer bool
	}{
		{"bad signature", string(flipped), ReasonBadSignature, true},
		{"missing signature", compact(t, edHdr, goodJSON, nil), ReasonMissingSig, true},
		{"only two parts", parts[0] + "." + parts[1], ReasonNotCompact, false},
		{"alg none", compact(t, map[string]string{"alg": "none"}, goodJSON, nil), ReasonBadAlg, true},
		{"alg none with a signature", compact(t, map[string]string{"alg": "none"}, goodJSON, ops), ReasonBadAlg, true},
		{"alg None (case)", compact(t, map[string]string{"alg": "NONE"}, goodJSON, nil), ReasonBadAlg, true},
		{"HS256 with the public key as secret", withSig(map[string]string{"alg": "HS256"}, hmacWith(opsPub)), ReasonBadAlg, true},
		{"HS256 with the PEM as secret", withSig(map[string]string{"alg": "HS256"}, hmacWith(pubPEM(t, opsPub))), ReasonBadAlg, true},
		{"RS256", withSig(map[string]string{"alg": "RS256"}, func(in []byte) []byte {
			h := sha256.Sum256(in)
			s, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, h[:])
			if err != nil {
				t.Fatal(err)
			}
			return s
		}), ReasonBadAlg, true},
		{"ES256", withSig(map[string]string{"alg": "ES256"}, func(in []byte) []byte {
			h := sha256.Sum256(in)
			s, err := ecdsa.SignASN1(rand.Reader, ecKey, h[:])
			if err != nil {
				t.Fatal(err)
			}
			return s
		}), ReasonBadAlg, true},
		{"Ed25519 alg name", compact(t, map[string]string{"alg": "Ed25519"}, goodJSON, ops), ReasonBadAlg, true},
		{"untrusted key", signed(t, other, good), ReasonBadSignature, true},
		{"untrusted key naming itself", compact(t, map[string]string{"alg": "EdDSA", "kid": otherKid}, goodJSON, other), ReasonUnknownKey, true},
		{"kid naming an unknown key", compact(t, map[string]string{"alg": "EdDSA", "kid": "city-ops-2019"}, goodJSON, ops), ReasonUnknownKey, true},
		{"kid of a trusted key, signed by another", compact(t, map[string]string{"alg": "EdDSA", "kid": opsKid}, goodJSON, other), ReasonBadSignature, true},
		{"embedded jwk header", compact(t, map[string]any{"alg": "EdDSA", "jwk": map[string]string{"kty": "OKP", "crv": "Ed25519", "x": enc(other.Public().(ed25519.PublicKey))}}, goodJSON, other), ReasonBadHeader, true},
		{"crit b64=false", compact(t, map[string]any{"alg": "EdDSA", "b64": false, "crit": []string{"b64"}}, goodJSON, ops), ReasonBadHeader, true},
		{"header not JSON", compact(t, []byte(`{"alg":"EdDSA"`), goodJSON, ops), ReasonBadHeader, true},
		{"header alg not a string", compact(t, map[string]any{"alg": 1}, goodJSON, ops), ReasonBadHeader, true},
		{"payload of another signed command", parts[0] + "." + strings.Split(other2, ".")[1] + "." + parts[2], ReasonBadSignature, true},
		{"wrong agent", signed(t, ops, payload(func(p *Payload) { p.Agent = "gw-0043" })), ReasonWrongAgent, false},
		{"wrong agent, unsigned", compact(t, map[string]string{"alg": "none"}, mustJSON(t, payload(func(p *Payload) { p.Agent = "gw-0043" })), nil), ReasonBadAlg, false},
		{"expired", signed(t, ops, payload(func(p *Payload) { p.IAT = testNow.Add(-6 * time.Minute).Unix(); p.EXP = testNow.Unix() })), ReasonExpired, true},
		{"iat too old", signed(t, ops, payload(func(p *Payload) {
			p.IAT = testNow.Add(-11 * time.Minute).Unix()
			p.EXP = testNow.Add(time.Minute).Unix()
		})), ReasonIssuedTooLongAgo, true},
		{"iat too new", signed(t, ops, payload(func(p *Payload) {
			p.IAT = testNow.Add(11 * time.Minute).Unix()
			p.EXP = testNow.Add(15 * time.Minute).Unix()
		})), ReasonIssuedInFuture, true},
		{"lifetime beyond max_age", signed(t, ops, payload(func(p *Payload) { p.EXP = testNow.Add(11 * time.Minute).Unix() })), ReasonLifetime, true},
		{"exp before iat", signed(t, ops, payload(func(p *Payload) { p.EXP = p.IAT - 1 })), ReasonInvalidField, true},
		{"unknown command", signed(t, ops, payload(func(p *Payload) { p.Cmd = "reboot" })), ReasonUnknownCmd, true},
		{"contract command without handler", signed(t, ops, payload(func(p *Payload) { p.Cmd = CmdCSR })), ReasonUnknownCmd, true},
		{"malformed JSON", compact(t, edHdr, []byte(`{"agent":"gw-0042","cmd":"status"`), ops), ReasonMalformedJSON, false},
		{"payload not an object", compact(t, edHdr, []byte(`["gw-0042","status"]`), ops), ReasonMalformedJSON, false},
		{"payload null", compact(t, edHdr, []byte(`null`), ops), ReasonMalformedJSON, false},
		{"garbage after the payload object", compact(t, edHdr, append(append([]byte{}, goodJSON...), []byte(` {}`)...), ops), ReasonMalformedJSON, false},
		{"unknown payload member", compact(t, edHdr, []byte(strings.Replace(string(goodJSON), `{`, `{"sudo":true,`, 1)), ops), ReasonMalformedJSON, true},
		{"iat not an integer", compact(t, edHdr, []byte(strings.Replace(string(goodJSON), `"iat":`, `"iat":0.5+`, 1)), ops), ReasonMalformedJSON, false},
		{"iat a string", compact(t, edHdr, []byte(`{"agent":"gw-0042","cmd":"status","jti":"a","iat":"1795600800","exp":1795601100}`), ops), ReasonMalformedJSON, true},
		{"args not an object", signed(t, ops, payload(func(p *Payload) { p.Args = json.RawMessage(`"rm -rf /"`) })), ReasonMalformedJSON, true},
		{"missing jti", signed(t, ops, payload(func(p *Payload) { p.JTI = "" })), ReasonMissingField, true},
		{"missing exp", compact(t, edHdr, []byte(`{"agent":"gw-0042","cmd":"status","jti":"a","iat":1795600800}`), ops), ReasonMissingField, true},
		{"jti too long", signed(t, ops, payload(func(p *Payload) { p.JTI = strings.Repeat("j", MaxJTILength+1) })), ReasonInvalidField, true},
		{"jti with a newline", signed(t, ops, payload(func(p *Payload) { p.JTI = "a\nforged log line" })), ReasonInvalidField, true},
		{"trailing garbage", valid + "x", ReasonNotCompact, true},
		{"trailing part", valid + ".x", ReasonNotCompact, false},
		{"trailing space", valid + " ", ReasonNotCompact, true},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], ReasonNotCompact, true},
		{"JSON serialization (flattened)", flat, ReasonNotCompact, false},
		{"JSON serialization, two signatures", general, ReasonNotCompact, false},
		{"empty", "", ReasonNotCompact, false},
		{"huge input", valid + strings.Repeat("A", MaxCommandBytes), ReasonTooLarge, false},
		{"huge payload", signed(t, ops, payload(func(p *Payload) {
			p.Args = json.RawMessage(`{"toml":"` + strings.Repeat("#", MaxCommandBytes) + `"}`)
		})), ReasonTooLarge, false},
	}
	if len(cases) < 20 {
		t.Fatalf("only %d variants", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, "", func(o *Options) { o.AnswerBurst = 1000 })
			before := r.replayFile(t)
			_, err := r.d.verifier.Verify([]byte(c.raw))
			rej, ok := err.(*Rejection)
			if !ok {
				t.Fatalf("Verify: %v, want a rejection %s", err, c.reason)
			}
			if rej.Reason != c.reason || rej.Answer != c.answer {
				t.Fatalf("rejected %s (answer %v): %s; want %s (answer %v)", rej.Reason, rej.Answer, rej.Detail, c.reason, c.answer)
			}
			ans, pub := r.d.Handle(context.Background(), []byte(c.raw))
			if pub != c.answer {
				t.Fatalf("answered %v, want %v: %s", pub, c.answer, ans)
			}
			if pub {
				res := decodeResult(t, ans)
				if res.OK || res.Reason != c.reason || !strings.HasPrefix(res.Error, string(c.reason)+": ") || res.Result != nil {
					t.Fatalf("answer %s", ans)
				}
				if c.answer && res.JTI == "" && c.reason != ReasonMissingField && c.reason != ReasonNotCompact {
					t.Fatalf("answer without the jti: %s", ans)
				}
			}
			if r.handled() != 0 {
				t.Fatal("a rejected command ran")
			}
			if after := r.replayFile(t); !bytes.Equal(before, after) {
				t.Fatalf("replay store changed: %s", after)
			}
			if s := r.d.Stats(); s.Accepted != 0 || s.Rejected[c.reason] != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestReplayed(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, dir)
	tok := []byte(signed(t, testKey("ops"), payload()))
	if _, pub := r.d.Handle(context.Background(), tok); !pub || r.handled() != 1 {
		t.Fatal("first copy not accepted")
	}
	r.clock.Advance(time.Minute)
	ans, pub := r.d.Handle(context.Background(), tok)
	if res := decodeResult(t, ans); !pub || res.OK || res.Reason != ReasonReplayed || res.JTI != "jti-1" {
		t.Fatalf("replay answered %s", ans)
	}
	// The same jti in a new, validly signed command is a replay too.
	again := []byte(signed(t, testKey("ops-2"), payload(func(p *Payload) { p.Cmd = CmdDiagnose })))
	if _, err := r.d.verifier.Verify(again); err.(*Rejection).Reason != ReasonReplayed {
		t.Fatalf("same jti, new command: %v", err)
	}

	// After a restart: a new dispatcher on the same state directory.
	r2 := newRig(t, dir)
	r2.clock.Advance(2 * time.Minute)
	_, err := r2.d.verifier.Verify(tok)
	if rej, ok := err.(*Rejection); !ok || rej.Reason != ReasonReplayed {
		t.Fatalf("after restart: %v", err)
	}
	if r2.handled() != 0 || r.handled() != 1 {
		t.Fatal("replay ran")
	}
}

func TestReplayStoreBound(t *testing.T) {
	r := newRig(t, "", func(o *Options) { o.MaxReplayEntries = 2 })
	for i, jti := range []string{"a", "b", "c"} {
		tok := signed(t, testKey("ops"), payload(func(p *Payload) { p.JTI = jti }))
		ans, _ := r.d.Handle(context.Background(), []byte(tok))
		res := decodeResult(t, ans)
		if want := i < 2; res.OK != want {
			t.Fatalf("command %s: %s", jti, ans)
		}
		if i == 2 && res.Reason != ReasonReplayStore {
			t.Fatalf("command %s: %s", jti, ans)
		}
	}
	if r.handled() != 2 {
		t.Fatalf("ran %d", r.handled())
	}
	// Once the first two expire (exp + max_age), there is room again.
	r.clock.Advance(5*time.Minute + 10*time.Minute)
	tok := signed(t, testKey("ops"), payload(func(p *Payload) {
		p.JTI = "c"
		p.IAT = r.clock.Now().Unix()
		p.EXP = p.IAT + 60
	}))
	if ans, _ := r.d.Handle(context.Background(), []byte(tok)); !decodeResult(t, ans).OK {
		t.Fatalf("after expiry: %s", ans)
	}
	if n := r.d.ReplayStore().Len(); n != 1 {
		t.Fatalf("store holds %d entries, want 1 (expired ones pruned)", n)
	}
}
