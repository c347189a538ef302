package agent

import "time"

// drainGrace bounds how long a stopping agent keeps delivering what it has
// already sampled (without waiting for uplink.batch_wait) before it says
// goodbye, so that a Ctrl-C or `systemctl stop` with the broker up leaves
// nothing behind in the usual case. Whatever is left stays in the buffer
// and goes out at the next start; the log says how much.
const drainGrace = 2 * time.Second

// drainBeforeExit waits, while the uplink is connected and for at most
// drainGrace, until the broker has acknowledged the backlog. Sampling has
// stopped; live batches are hurried out. Sentilo is not waited for (nor is
// anything on a Sentilo-only gateway): what it has not acknowledged stays
// in the buffer, its progress with it, and goes at the next start.
func (a *agent) drainBeforeExit() {
	if a.up == nil || !a.up.State().Connected || a.q.Stats().Count == 0 {
		return
	}
	deadline := a.clock.Now().Add(drainGrace)
	for a.q.Stats().Count > 0 && a.up.State().Connected && a.clock.Now().Before(deadline) {
		a.hurryMQTT()
		<-a.clock.After(50 * time.Millisecond)
	}
}

// reportLeft says plainly, at exit, what stays in the buffer for the next
// start.
func (a *agent) reportLeft() {
	if n := a.q.Stats().Count; n > 0 {
		a.log.Info("readings not yet acknowledged by every output stay in the buffer; they are delivered at the next start", "readings", n)
		return
	}
	a.log.Info("every reading was acknowledged; the buffer is empty")
}
