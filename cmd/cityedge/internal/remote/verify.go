package remote

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/jonboulle/clockwork"
)

// Limits on a command. They bound what an unauthenticated publisher can make
// the agent parse and remember.
const (
	// MaxCommandBytes bounds a whole command (a config in args.toml
	// included, base64url-encoded).
	MaxCommandBytes = 256 << 10
	// MaxJTILength bounds the command id.
	MaxJTILength = 128
	// maxEcho bounds the unverified strings copied into an answer.
	maxEcho = MaxJTILength
)

// The command names of the contract (docs/REMOTE.md). A [Dispatcher] accepts
// handlers for these names only.
const (
	CmdDiagnose    = "diagnose"
	CmdStatus      = "status"
	CmdConfig      = "config"
	CmdCSR         = "csr"
	CmdInstallCert = "install_cert"
)

// Commands lists the command names of the contract.
func Commands() []string {
	return []string{CmdDiagnose, CmdStatus, CmdConfig, CmdCSR, CmdInstallCert}
}

// Command is a verified, accepted command.
type Command struct {
	Agent    string
	Cmd      string
	JTI      string
	IssuedAt time.Time
	Expires  time.Time
	// Args is the JSON object of the "args" member; "{}" when it was
	// absent or null.
	Args json.RawMessage
	// KeyID is the thumbprint of the trusted key that verified it.
	KeyID string
}

// Payload is the signed JSON payload of a command, as cityedge-ctl writes it
// and as the agent reads it (members in this order).
type Payload struct {
	Agent string          `json:"agent"`
	Cmd   string          `json:"cmd"`
	JTI   string          `json:"jti"`
	IAT   int64           `json:"iat"`
	EXP   int64           `json:"exp"`
	Args  json.RawMessage `json:"args,omitempty"`
}

// VerifierOptions configure a [Verifier].
type VerifierOptions struct {
	AgentID string
	Keys    *KeySet
	// MaxAge is the validity window and the allowed clock skew (config key
	// remote.max_age): iat may be at most MaxAge away from this agent's
	// clock, and exp at most MaxAge after iat.
	MaxAge time.Duration
	// Known reports whether a command name has a handler; nil knows none.
	Known func(cmd string) bool
	// Replay remembers accepted jti values. Required.
	Replay *ReplayStore
	Clock  clockwork.Clock // nil: the real clock
}

// Verifier checks commands. It is safe for concurrent use; the replay check
// and the recording of an accepted jti are one step.
type Verifier struct {
	opts VerifierOptions
	mu   sync.Mutex
}

// NewVerifier checks opts and returns a Verifier.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	switch {
	case opts.AgentID == "":
		return nil, errors.New("remote: verifier: no agent id")
	case opts.Keys == nil || len(opts.Keys.keys) == 0:
		return nil, errors.New("remote: verifier: no trusted keys")
	case opts.MaxAge <= 0:
		return nil, fmt.Errorf("remote: verifier: max_age %v must be positive", opts.MaxAge)
	case opts.Replay == nil:
		return nil, errors.New("remote: verifier: no replay store")
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Known == nil {
		opts.Known = func(string) bool { return false }
	}
	return &Verifier{opts: opts}, nil
}

var b64 = base64.RawURLEncoding.Strict()

// Verify checks raw and, when every check passes, records its jti as
// accepted and returns the command. Otherwise the error is a *[Rejection].
// Nothing is recorded for a rejected command.
func (v *Verifier) Verify(raw []byte) (*Command, error) {
	if len(raw) > MaxCommandBytes {
		// Not even peeked at: nobody is answered for a flood.
		return nil, &Rejection{Reason: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(raw), MaxCommandBytes)}
	}
	parts := bytes.Split(raw, []byte("."))
	if len(parts) != 3 {
		return nil, &Rejection{Reason: ReasonNotCompact, Detail: fmt.Sprintf("%d dot-separated parts, want 3 (JWS compact serialization)", len(parts))}
	}
	hdrRaw, hdrErr := b64.DecodeString(string(parts[0]))
	payload, plErr := b64.DecodeString(string(parts[1]))
	sig, sigErr := b64.DecodeString(string(parts[2]))
	if plErr != nil {
		return nil, &Rejection{Reason: ReasonNotCompact, Detail: "payload is not base64url"}
	}
	// From here on the payload is readable: peek at it so that a
	// rejection can be answered when it names this agent.
	rej := v.peek(payload)
	reject := func(r Reason, format string, a ...any) (*Command, error) {
		rej.Reason, rej.Detail = r, fmt.Sprintf(format, a...)
		return nil, rej
	}
	if hdrErr != nil {
		return reject(ReasonNotCompact, "protected header is not base64url")
	}
	if sigErr != nil {
		return reject(ReasonNotCompact, "signature is not base64url")
	}
	alg, kid, err := parseHeader(hdrRaw)
	if err != nil {
		return reject(ReasonBadHeader, "%v", err)
	}
	if alg != string(jose.EdDSA) {
		return reject(ReasonBadAlg, "alg %q, only EdDSA is accepted", clip(alg))
	}
	if len(sig) == 0 {
		return reject(ReasonMissingSig, "empty signature")
	}
	keys := v.opts.Keys.keys
	if kid != "" {
		k, ok := v.opts.Keys.Lookup(kid)
		if !ok {
			return reject(ReasonUnknownKey, "kid %q is not a trusted key", clip(kid))
		}
		keys = []Key{k}
	}
	jws, err := jose.ParseSignedCompact(string(raw), []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return reject(ReasonNotCompact, "%v", err)
	}
	var verified []byte
	var keyID string
	for _, k := range keys {
		if p, err := jws.Verify(k.Pub); err == nil {
			verified, keyID = p, k.ID
			break
		}
	}
	if verified == nil {
		if kid != "" {
			return reject(ReasonBadSignature, "signature does not verify with key %s", kid)
		}
		return reject(ReasonBadSignature, "no trusted key verifies the signature")
	}
	// The payload is authentic from here on.
	p, r, detail := decodePayload(verified)
	if r != "" {
		return reject(r, "%s", detail)
	}
	if p.Agent != v.opts.AgentID {
		rej.Answer = false
		return reject(ReasonWrongAgent, "addressed to agent %q", clip(p.Agent))
	}
	now := v.opts.Clock.Now()
	iat, exp := time.Unix(p.IAT, 0), time.Unix(p.EXP, 0)
	switch {
	case !now.Before(exp):
		return reject(ReasonExpired, "exp %s is not after now %s", rfc3339(exp), rfc3339(now))
	case iat.After(now.Add(v.opts.MaxAge)):
		return reject(ReasonIssuedInFuture, "iat %s is more than max_age %v after now %s", rfc3339(iat), v.opts.MaxAge, rfc3339(now))
	case iat.Before(now.Add(-v.opts.MaxAge)):
		return reject(ReasonIssuedTooLongAgo, "iat %s is more than max_age %v before now %s", rfc3339(iat), v.opts.MaxAge, rfc3339(now))
	case exp.Sub(iat) > v.opts.MaxAge:
		return reject(ReasonLifetime, "exp is %v after iat, more than max_age %v", exp.Sub(iat), v.opts.MaxAge)
	}
	if !v.opts.Known(p.Cmd) {
		return reject(ReasonUnknownCmd, "unknown command %q", clip(p.Cmd))
	}
	v.mu.Lock()
	err = v.opts.Replay.Accept(p.JTI, exp)
	v.mu.Unlock()
	switch {
	case errors.Is(err, ErrReplayed):
		return reject(ReasonReplayed, "jti %q was already accepted", p.JTI)
	case err != nil:
		return reject(ReasonReplayStore, "not executed: %v", err)
	}
	args := p.Args
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	return &Command{Agent: p.Agent, Cmd: p.Cmd, JTI: p.JTI, IssuedAt: iat, Expires: exp, Args: args, KeyID: keyID}, nil
}

// peek reads the unverified payload leniently for the answer: the rejection
// is answered when it names this agent.
func (v *Verifier) peek(payload []byte) *Rejection {
	var p struct {
		Agent any `json:"agent"`
		Cmd   any `json:"cmd"`
		JTI   any `json:"jti"`
	}
	rej := &Rejection{}
	if json.Unmarshal(payload, &p) != nil {
		return rej
	}
	agent, _ := p.Agent.(string)
	rej.Answer = agent == v.opts.AgentID
	if s, ok := p.JTI.(string); ok {
		rej.JTI = clip(s)
	}
	if s, ok := p.Cmd.(string); ok {
		rej.Cmd = clip(s)
	}
	return rej
}

// parseHeader reads the protected header: a JSON object with a string
// "alg" and optionally string "kid" and "typ", nothing else (no "crit",
// "b64", "jwk", "jku", "x5c", "x5u": keys come from trusted_keys only).
func parseHeader(b []byte) (alg, kid string, err error) {
	var h map[string]json.RawMessage
	if err := strictUnmarshal(b, &h); err != nil {
		return "", "", fmt.Errorf("protected header: %v", err)
	}
	if h == nil {
		return "", "", errors.New("protected header is not a JSON object")
	}
	for name, raw := range h {
		var s string
		switch name {
		case "alg", "kid", "typ":
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", "", fmt.Errorf("protected header member %q is not a string", name)
			}
		default:
			return "", "", fmt.Errorf("protected header member %q is not accepted", clip(name))
		}
		switch name {
		case "alg":
			alg = s
		case "kid":
			kid = s
			if kid == "" {
				return "", "", errors.New("protected header kid is empty")
			}
		}
	}
	if _, ok := h["alg"]; !ok {
		return "", "", errors.New("protected header has no alg")
	}
	return alg, kid, nil
}

type wirePayload struct {
	Agent *string         `json:"agent"`
	Cmd   *string         `json:"cmd"`
	JTI   *string         `json:"jti"`
	IAT   *int64          `json:"iat"`
	EXP   *int64          `json:"exp"`
	Args  json.RawMessage `json:"args"`
}

// decodePayload parses the verified payload; a non-empty Reason says why it
// is refused.
func decodePayload(b []byte) (Payload, Reason, string) {
	var w wirePayload
	if err := strictUnmarshal(b, &w); err != nil {
		return Payload{}, ReasonMalformedJSON, err.Error()
	}
	var missing []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"agent", w.Agent != nil && *w.Agent != ""},
		{"cmd", w.Cmd != nil && *w.Cmd != ""},
		{"jti", w.JTI != nil && *w.JTI != ""},
		{"iat", w.IAT != nil},
		{"exp", w.EXP != nil},
	} {
		if !f.ok {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return Payload{}, ReasonMissingField, "missing or empty: " + strings.Join(missing, ", ")
	}
	p := Payload{Agent: *w.Agent, Cmd: *w.Cmd, JTI: *w.JTI, IAT: *w.IAT, EXP: *w.EXP, Args: w.Args}
	switch {
	case len(p.JTI) > MaxJTILength:
		return p, ReasonInvalidField, fmt.Sprintf("jti has %d bytes, limit %d", len(p.JTI), MaxJTILength)
	case !printable(p.JTI):
		return p, ReasonInvalidField, "jti has control characters or invalid UTF-8"
	case p.IAT <= 0 || p.EXP <= 0:
		return p, ReasonInvalidField, "iat and exp must be positive Unix times"
	case p.EXP <= p.IAT:
		return p, ReasonInvalidField, "exp is not after iat"
	}
	if len(p.Args) > 0 && string(p.Args) != "null" && p.Args[0] != '{' {
		return p, ReasonMalformedJSON, "args is not a JSON object"
	}
	return p, "", ""
}

// strictUnmarshal decodes exactly one JSON object with no unknown members
// and nothing after it.
func strictUnmarshal(b []byte, v any) error {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// clip bounds an unverified string before it is logged or answered.
func clip(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	s = s[:maxEcho]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
