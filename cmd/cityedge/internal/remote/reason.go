package remote

import "fmt"

// Reason says why a command was rejected. The values are part of the
// contract: they appear in logs (key "reason"), in status and metrics
// counters, and in the "reason" member of an answer.
type Reason string

// The rejection reasons, in the order the checks run.
const (
	ReasonTooLarge         Reason = "too_large"         // input longer than MaxCommandBytes
	ReasonNotCompact       Reason = "not_compact"       // not three base64url parts (e.g. the JSON serialization)
	ReasonBadHeader        Reason = "bad_header"        // protected header not JSON, or members other than alg, kid, typ
	ReasonBadAlg           Reason = "bad_alg"           // alg other than EdDSA (none, HS256, RS256, ...)
	ReasonMissingSig       Reason = "missing_signature" // empty signature part
	ReasonUnknownKey       Reason = "unknown_key"       // kid names no trusted key
	ReasonBadSignature     Reason = "bad_signature"     // no trusted key verifies the signature
	ReasonMalformedJSON    Reason = "malformed_json"    // payload not one JSON object of the expected types, or unknown members
	ReasonMissingField     Reason = "missing_field"     // agent, cmd, jti, iat or exp absent or empty
	ReasonInvalidField     Reason = "invalid_field"     // a field out of range (jti too long, exp not after iat, ...)
	ReasonWrongAgent       Reason = "wrong_agent"       // addressed to another agent
	ReasonExpired          Reason = "expired"           // exp has passed
	ReasonIssuedInFuture   Reason = "iat_future"        // iat more than max_age ahead of this agent's clock
	ReasonIssuedTooLongAgo Reason = "iat_past"          // iat more than max_age behind this agent's clock
	ReasonLifetime         Reason = "exp_too_far"       // exp - iat longer than max_age
	ReasonUnknownCmd       Reason = "unknown_cmd"       // no handler for cmd
	ReasonReplayed         Reason = "replayed"          // jti already accepted
	ReasonReplayStore      Reason = "replay_store"      // the replay store is full or cannot be written: not executed
)

// Reasons lists every reason, so that counters can start at zero.
func Reasons() []Reason {
	return []Reason{ReasonTooLarge, ReasonNotCompact, ReasonBadHeader, ReasonBadAlg, ReasonMissingSig,
		ReasonUnknownKey, ReasonBadSignature, ReasonMalformedJSON, ReasonMissingField, ReasonInvalidField,
		ReasonWrongAgent, ReasonExpired, ReasonIssuedInFuture, ReasonIssuedTooLongAgo, ReasonLifetime,
		ReasonUnknownCmd, ReasonReplayed, ReasonReplayStore}
}

// Rejection is the error [Verifier.Verify] returns for a command it refuses.
type Rejection struct {
	Reason Reason
	Detail string // human-readable, safe to log and to answer (no key material)
	// Answer is true when the payload names this agent, so that an answer
	// (subject to the rate limit) goes to <topic_prefix>/cmd/result.
	Answer bool
	// JTI and Cmd are taken from the payload when it could be read, for the
	// answer and the log. They are unverified unless Reason comes after
	// ReasonBadSignature.
	JTI string
	Cmd string
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("remote: command rejected: %s: %s", r.Reason, r.Detail)
}
