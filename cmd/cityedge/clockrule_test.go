package main

// testClockRule states the clock rule in the configurations of the tests that
// run the real binary and expect delivery. This machine and CI keep the right
// time but run no NTP client: the kernel says the clock is unsynchronised
// (adjtimex STA_UNSYNC, maxerror 16 s), so under the default clock.hold of
// 10 minutes every reading would wait (DECISIONS 1). hold = "0s" sends them
// at once, marked "tq":"unsynced" — the rule a gateway without NTP would
// state; the default itself is unchanged and covered by the agent's unit
// tests with an injected sync source.
const testClockRule = `
[clock]
# No NTP client on test machines (DECISIONS 1): send at once, marked unsynced.
hold = "0s"
`
