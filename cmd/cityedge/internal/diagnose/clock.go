package diagnose

import (
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
)

// diagnoseAgentClock reports the running agent's clock rule: whether it
// trusts the wall clock and since when, the kernel's error estimate, why
// not, the readings held for it, and the last correction applied.
func diagnoseAgentClock(live *agent.LiveState, r *report) {
	c := live.Clock
	if c == nil {
		return
	}
	last := "none"
	if c.LastCorrection != 0 {
		last = c.LastCorrection.String() + " at " + c.CorrectedAt.UTC().Format(time.RFC3339)
	}
	switch {
	case c.Synced:
		r.add("clock", "agent", Pass, "trusted since %s, max error %v; %d readings held; last correction %s",
			c.Since.UTC().Format(time.RFC3339), c.MaxError, c.Held, last)
	default:
		r.add("clock", "agent", Warn, "NOT trusted: %s; %d readings held for it (sent after clock.hold, marked unsynced, unless their time is before the build date); max error %v; last correction %s",
			c.Reason, c.Held, c.MaxError, last)
	}
	if c.Discarded > 0 {
		r.add("clock", "discarded", Warn, "%d readings of an earlier boot deleted: their time was before the build date and that boot never learned the true time", c.Discarded)
	}
}
