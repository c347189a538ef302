package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
)

func TestDiagnoseAgentClock(t *testing.T) {
	since := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		clock *agent.ClockStatus
		want  []string // lines "VERDICT area name", each followed by detail fragments after ": "
	}{
		{"no clock rule", nil, nil},
		{"trusted, never corrected", &agent.ClockStatus{State: clocksync.State{Synced: true, Since: since, MaxError: 3 * time.Millisecond}},
			[]string{"PASS clock agent: trusted since 2026-05-04T10:00:00Z|max error 3ms|0 readings held|last correction none"}},
		{"trusted after NTP's first step", &agent.ClockStatus{State: clocksync.State{Synced: true, Since: since, MaxError: 20 * time.Millisecond,
			LastCorrection: 5 * 365 * 24 * time.Hour, CorrectedAt: since}},
			[]string{"PASS clock agent: last correction 43800h0m0s at 2026-05-04T10:00:00Z"}},
		{"not trusted, readings held", &agent.ClockStatus{State: clocksync.State{Reason: "the kernel says the clock is not synchronised (is NTP running?)", MaxError: 16 * time.Second}, Held: 420},
			[]string{"WARN clock agent: NOT trusted: the kernel says the clock is not synchronised (is NTP running?)|420 readings held for it|max error 16s"}},
		{"discarded readings of an earlier boot", &agent.ClockStatus{State: clocksync.State{Synced: true, Since: since}, Discarded: 7},
			[]string{"PASS clock agent: trusted since", "WARN clock discarded: 7 readings of an earlier boot deleted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := &agent.LiveState{}
			live.Clock = tc.clock
			r := &report{}
			diagnoseAgentClock(live, r)
			if len(r.checks) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(r.checks), len(tc.want), lines(r))
			}
			for i, w := range tc.want {
				head, frags, _ := strings.Cut(w, ": ")
				c := r.checks[i]
				if got := c.Verdict + " " + c.Area + " " + c.Name; got != head {
					t.Errorf("line %d is %q, want %q", i, got, head)
				}
				for _, f := range strings.Split(frags, "|") {
					if !strings.Contains(c.Detail, f) {
						t.Errorf("line %d %q lacks %q", i, c.Detail, f)
					}
				}
			}
		})
	}
}
