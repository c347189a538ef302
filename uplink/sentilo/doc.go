// Package sentilo is the agent's second output: it delivers readings to a
// Sentilo 2.0.0 platform (the city's own sensor platform, github.com/sentilo/sentilo)
// through the city's TLS reverse proxy, and tells the forwarder, for every
// reading it was given, what became of it.
//
// The contract it speaks, from Sentilo's source (files cited where each rule
// is applied, and in package sentilotest, the stand-in server of the tests):
//
//   - PUT /data/{provider} with {"sensors":[{"sensor":ID,"observations":[...],"location":"lat lng"}]},
//     header IDENTITY_KEY: token. 200 with an empty body stores everything.
//   - 404 is a partial accept: the observations of registered, online sensors
//     ARE stored; the message and errorDetails name the rest (404.1 not found,
//     404.2 not online). Such readings are held per sensor and retried
//     (10 s doubling to 10 min); the accepted ones are acked and never resent,
//     because Sentilo de-duplicates nothing.
//   - 400: the request is bisected until only the observations the server
//     refuses on their own are left; those are set aside (counted, the server's
//     detail logged once), the rest is delivered.
//   - 401/403: nothing is sent for 30 s doubling to 10 min; one log line per
//     change of cause. 401 echoes the token: it is redacted before any log.
//   - 429: nothing is sent before the reset the headers give, in minutes
//     (0 or absent: 60 s).
//   - 503, other 5xx, timeouts, resets: 1 s doubling to 5 min with jitter. A
//     request whose outcome is unknown (it may have been stored) is resent and
//     counted as resent.
//
// The client waits for nothing itself: Publish returns at once with outcomes
// and the time before which a reading must not be offered again; Wait blocks
// on the injected clockwork.Clock until the next request may go.
package sentilo
