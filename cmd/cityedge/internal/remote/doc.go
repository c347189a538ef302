// Package remote verifies and dispatches the signed remote commands of
// issue #15 (docs/REMOTE.md is the contract).
//
// A command arrives on <topic_prefix>/cmd as a JWS compact serialization
// (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037). The package owns every
// rule about it: which keys are trusted ([KeySet], loaded from a PEM file),
// what a valid payload is ([Verifier]), which command ids were already
// accepted ([ReplayStore], persistent under the state directory), which
// rejections are answered and how often ([Limiter]), and the shape of the
// answer ([Result]). The agent registers one [Handler] per command name on a
// [Dispatcher] and publishes what [Dispatcher.Handle] returns on
// <topic_prefix>/cmd/result.
//
// Every rejection carries a [Reason], a short stable string used in logs, in
// the status counters and in the answer. A rejection is answered only when
// the payload names this agent; answers to rejections are rate-limited,
// because the payload of an unsigned or forged command can name this agent
// too.
package remote
