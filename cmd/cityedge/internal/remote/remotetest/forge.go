// Package remotetest makes signed and forged remote commands for tests of
// the remote channel end to end (the real binary against a real broker):
// the same variants internal/remote's own table tests reject, built for a
// given agent, key and moment.
package remotetest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
)

// Forgery is a command that must be rejected.
type Forgery struct {
	Name     string
	Token    string
	Reason   remote.Reason
	Answered bool // the payload names the agent: an answer is due (rate limit permitting)
}

func enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Compact builds a compact JWS: header (a value or raw []byte), payload,
// signed with priv over the RFC 7515 signing input (nil: empty signature).
func Compact(header any, payload []byte, priv ed25519.PrivateKey) string {
	h, ok := header.([]byte)
	if !ok {
		h = mustJSON(header)
	}
	in := enc(h) + "." + enc(payload)
	if priv == nil {
		return in + "."
	}
	return in + "." + enc(ed25519.Sign(priv, []byte(in)))
}

// Sign signs p with priv under {"alg":"EdDSA"}.
func Sign(priv ed25519.PrivateKey, p remote.Payload) string {
	return Compact(map[string]string{"alg": "EdDSA"}, mustJSON(p), priv)
}

// PublicPEM is pub as a PEM "PUBLIC KEY" block (a trusted_keys file).
func PublicPEM(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Forgeries returns at least 25 commands for agent that a gateway trusting
// only trusted, with remote.max_age maxAge and its clock at now, must
// reject. Each would run a config command (args.toml changes agent.id), so
// any acceptance shows. intruder is a key the gateway does not trust.
func Forgeries(trusted, intruder ed25519.PrivateKey, agent string, now time.Time, maxAge time.Duration) []Forgery {
	n := 0
	payload := func(mods ...func(*remote.Payload)) remote.Payload {
		n++
		p := remote.Payload{Agent: agent, Cmd: remote.CmdConfig, JTI: fmt.Sprintf("forged-%d-%d", now.Unix(), n),
			IAT: now.Unix(), EXP: now.Add(time.Minute).Unix(), Args: json.RawMessage(`{"toml":"[agent]\nid = \"evil\"\n"}`)}
		for _, m := range mods {
			m(&p)
		}
		return p
	}
	ed := map[string]string{"alg": "EdDSA"}
	good := mustJSON(payload())
	trustedPub := trusted.Public().(ed25519.PublicKey)
	tkid, _ := remote.KeyID(trustedPub)
	ikid, _ := remote.KeyID(intruder.Public().(ed25519.PublicKey))
	valid := Compact(ed, good, trusted)
	parts := strings.Split(valid, ".")
	other := strings.Split(Sign(trusted, payload()), ".")
	// Another base64url character inside the signature: still compact and
	// decodable, only the signature is wrong (a bit flip could make '-' into
	// ',', which is not base64url, and the rejection reason with it).
	flipped := []byte(valid)
	if i := len(flipped) - 5; flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	hs := func(secret []byte) string {
		in := enc(mustJSON(map[string]string{"alg": "HS256"})) + "." + enc(good)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return in + "." + enc(m.Sum(nil))
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	es := func() string {
		in := enc(mustJSON(map[string]string{"alg": "ES256"})) + "." + enc(good)
		h := sha256.Sum256([]byte(in))
		s, err := ecdsa.SignASN1(rand.Reader, ec, h[:])
		if err != nil {
			panic(err)
		}
		return in + "." + enc(s)
	}
	signed := func(mods ...func(*remote.Payload)) string { return Sign(trusted, payload(mods...)) }
	secs := func(d time.Duration) int64 { return now.Add(d).Unix() }
	return []Forgery{
		{"bad signature", string(flipped), remote.ReasonBadSignature, true},
		{"missing signature", Compact(ed, good, nil), remote.ReasonMissingSig, true},
		{"only two parts", parts[0] + "." + parts[1], remote.ReasonNotCompact, false},
		{"alg none", Compact(map[string]string{"alg": "none"}, good, nil), remote.ReasonBadAlg, true},
		{"alg NONE signed", Compact(map[string]string{"alg": "NONE"}, good, trusted), remote.ReasonBadAlg, true},
		{"HS256 keyed with the public key", hs(trustedPub), remote.ReasonBadAlg, true},
		{"HS256 keyed with the PEM", hs(PublicPEM(trustedPub)), remote.ReasonBadAlg, true},
		{"ES256", es(), remote.ReasonBadAlg, true},
		{"untrusted key", Sign(intruder, payload()), remote.ReasonBadSignature, true},
		{"untrusted key naming itself", Compact(map[string]string{"alg": "EdDSA", "kid": ikid}, good, intruder), remote.ReasonUnknownKey, true},
		{"trusted kid, other signer", Compact(map[string]string{"alg": "EdDSA", "kid": tkid}, good, intruder), remote.ReasonBadSignature, true},
		{"embedded jwk", Compact(map[string]any{"alg": "EdDSA", "jwk": map[string]string{"kty": "OKP", "crv": "Ed25519",
			"x": enc(intruder.Public().(ed25519.PublicKey))}}, good, intruder), remote.ReasonBadHeader, true},
		{"crit b64", Compact(map[string]any{"alg": "EdDSA", "b64": false, "crit": []string{"b64"}}, good, trusted), remote.ReasonBadHeader, true},
		{"payload of another signed command", parts[0] + "." + other[1] + "." + parts[2], remote.ReasonBadSignature, true},
		{"wrong agent", signed(func(p *remote.Payload) { p.Agent = agent + "-other" }), remote.ReasonWrongAgent, false},
		{"expired", signed(func(p *remote.Payload) { p.IAT, p.EXP = secs(-maxAge/2), secs(-time.Minute) }), remote.ReasonExpired, true},
		{"iat too old", signed(func(p *remote.Payload) { p.IAT, p.EXP = secs(-maxAge-time.Minute), secs(time.Minute) }), remote.ReasonIssuedTooLongAgo, true},
		{"iat in the future", signed(func(p *remote.Payload) { p.IAT, p.EXP = secs(maxAge+time.Minute), secs(maxAge+2*time.Minute) }), remote.ReasonIssuedInFuture, true},
		{"lifetime beyond max_age", signed(func(p *remote.Payload) { p.EXP = secs(maxAge + time.Minute) }), remote.ReasonLifetime, true},
		{"exp before iat", signed(func(p *remote.Payload) { p.EXP = p.IAT - 1 }), remote.ReasonInvalidField, true},
		{"unknown command", signed(func(p *remote.Payload) { p.Cmd = "reboot" }), remote.ReasonUnknownCmd, true},
		{"malformed JSON", Compact(ed, []byte(`{"agent":"`+agent+`","cmd":"config"`), trusted), remote.ReasonMalformedJSON, false},
		{"unknown payload member", Compact(ed, []byte(strings.Replace(string(good), `{`, `{"sudo":true,`, 1)), trusted), remote.ReasonMalformedJSON, true},
		{"missing jti", signed(func(p *remote.Payload) { p.JTI = "" }), remote.ReasonMissingField, true},
		{"jti with a newline", signed(func(p *remote.Payload) { p.JTI = "a\nforged log line" }), remote.ReasonInvalidField, true},
		{"JSON serialization", `{"protected":"` + parts[0] + `","payload":"` + parts[1] + `","signature":"` + parts[2] + `"}`, remote.ReasonNotCompact, false},
		{"too large", valid + strings.Repeat("A", remote.MaxCommandBytes), remote.ReasonTooLarge, false},
	}
}
