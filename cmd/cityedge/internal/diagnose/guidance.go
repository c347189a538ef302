package diagnose

import (
	"context"
	"fmt"
	"strings"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

// diagnoseGuidance reports parking guidance: each zone's counts and what its
// signs show (from the running agent), and each sign's health. Without a
// running agent the signs are opened and blanked ("----", lamps off: what a
// stopped agent leaves), or with --sign-test lit in full for a person at
// the sign to check every segment.
func diagnoseGuidance(ctx context.Context, cfg *config.Config, live *agent.LiveState, o Options, r *report) {
	if len(cfg.Zones) == 0 {
		if o.SignTest {
			r.add("sign", "test", Warn, "no [[signs]] configured")
		}
		return
	}
	if live != nil {
		for _, z := range live.Zones {
			v := Pass
			switch {
			case z.Unknown == z.Total:
				v = Fail
			case z.Unknown > 0:
				v = Warn
			}
			var bays []string
			for _, b := range z.Bays {
				bays = append(bays, b.Sensor+" "+b.State)
			}
			r.add("zone", z.Zone, v, "free %d, occupied %d, unknown %d of %d (seq %d); signs show %q, lamps %s; bays: %s",
				z.Free, z.Occupied, z.Unknown, z.Total, z.Seq, z.Sign, onOff(z.Lamp), strings.Join(bays, ", "))
		}
		for _, s := range cfg.Signs {
			st, ok := live.Signs[s.Name]
			switch {
			case !ok:
				r.add("sign", s.Name, Fail, "the running agent does not know this sign: restart it to load the configuration")
			case !st.OK && st.Errors > 0:
				r.add("sign", s.Name, Fail, "%s %s (zone %s): failing, %d errors, last: %s; next retry %s", st.Driver, st.Where, st.Zone,
					st.Errors, st.LastError, st.NextRetry.Format("15:04:05"))
			case st.Errors > 0:
				r.add("sign", s.Name, Warn, "%s %s (zone %s): shows %q; %d errors before (last: %s)", st.Driver, st.Where, st.Zone, st.Shows, st.Errors, st.LastError)
			default:
				r.add("sign", s.Name, Pass, "%s %s (zone %s): shows %q", st.Driver, st.Where, st.Zone, st.Shows)
			}
		}
		if o.SignTest && len(cfg.Signs) > 0 {
			r.add("sign", "test", Warn, "not run: the running agent drives the signs (stop it first: systemctl stop cityedge)")
		}
		return
	}
	for _, z := range cfg.Zones {
		r.add("zone", z.Name, Pass, "%d bays (%s); counted by the running agent", len(z.Bays), strings.Join(z.Bays, ", "))
	}
	results := agent.BlankSigns
	what := "blanked: shows \"----\" (lamps off), as a stopped agent leaves it"
	if o.SignTest {
		results = agent.TestSigns
		what = "TEST PATTERN: every segment, dot and the colon lit (lamps on); check them at the sign, then run cityedge --blank-signs"
	}
	for _, res := range results(ctx, cfg, o.Simulate) {
		if res.Err != nil {
			r.add("sign", res.Name, Fail, "%s: %v", res.Where, res.Err)
			continue
		}
		r.add("sign", res.Name, Pass, "%s: %s", res.Where, what)
	}
}

// withLocation puts a parking sensor's configured location beside where it
// is attached: "pin GPIO17 @ [2.1701, 41.3870]" (DECISIONS 16).
func withLocation(s config.SensorConfig, where string) string {
	if s.Location == nil {
		return where
	}
	return fmt.Sprintf("%s @ [%.6g, %.6g]", where, s.Location.Point[0], s.Location.Point[1])
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
