// Package certs holds the TLS material of the uplink: it loads and validates
// the CA bundle, the client certificate and its private key, hands out a
// tls.Config for each connection attempt, notices when the files are replaced
// on disk and swaps in the new set without a restart, reports how many days
// are left before anything expires, and creates a private key and a
// certificate signing request on the gateway itself (enrollment).
//
// # Trust model
//
// The gateway trusts exactly the CA certificates in uplink.ca_file to vouch for
// the broker. The operating system's root store is added only when
// uplink.system_roots is set. The broker's host name is always checked (against
// uplink.server_name when that is set), TLS 1.2 is the minimum, and nothing in
// this package can turn verification off: there is no InsecureSkipVerify and no
// plaintext path.
//
// The gateway proves who it is with a client certificate whose subject CN is
// the agent id. That certificate must chain to the same CA bundle, so a
// certificate from a foreign CA is refused at start instead of failing at the
// broker. The private key is created on the gateway (Enroll) and never leaves
// it: only the CSR goes to the city's PKI. The key file must be readable by the
// agent's user alone (mode 0600, owned by that user), as ssh insists for its
// keys: another service on the gateway that gets compromised must not be able
// to copy the gateway's identity.
//
// # Time
//
// Gateways often boot without a real-time clock, so time is judged at the
// moment of use, not at start: an expired or not yet valid certificate does not
// stop the agent from starting (sampling and buffering go on); TLSConfig and the
// handshake refuse it until the clock or the files are right. A replacement set
// read by Reload, on the other hand, must be valid now, or the current set
// stays in use.
//
// Nothing here logs or returns private key material or whole certificates:
// only subjects, serial numbers, dates and file names.
package certs
