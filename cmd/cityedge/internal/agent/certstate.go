package agent

import (
	"fmt"

	"github.com/cityedge/cityedge/certs"
)

// tlsProblem says why the uplink cannot use the TLS material now (no usable
// set was ever read, or the live one is expired or not yet valid), with the
// fix as certs words it; "" when the set is usable. Status, the control
// socket (--diagnose) and systemd's STATUS= all show it.
func tlsProblem(st certs.Status) string {
	switch {
	case st.Unusable:
		return "TLS material unusable, uplink down, readings buffered: " + st.Warning
	case st.Expired:
		return "client certificate not usable now, uplink down, readings buffered: " + st.Warning
	}
	return ""
}

// statusLine is systemd's STATUS= text: the uplink's state, the backlog, the
// drops and, while there is one, the TLS problem.
func (a *agent) statusLine() string {
	st := a.up.State()
	q := a.q.Stats()
	line := fmt.Sprintf("STATUS=%s; backlog %d readings; dropped %d", a.mqttNote(st), q.Count, q.DroppedTotal)
	if p := tlsProblem(a.store.Status()); p != "" {
		line += "; " + p
	}
	if c := a.clockStatus(q); c != nil && c.Held > 0 {
		line += fmt.Sprintf("; %d readings held for a trusted clock (%s)", c.Held, c.Reason)
	}
	return line
}
