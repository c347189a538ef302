package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
)

// TestClockHold: [clock] hold defaults to clocksync's DefaultHold, takes 0s
// (never hold) up to MaxHold, and refuses anything else naming file, line
// and key.
func TestClockHold(t *testing.T) {
	for _, tc := range []struct {
		table string
		want  time.Duration
		say   string // non-empty: must be refused with this in the message
	}{
		{"", clocksync.DefaultHold, ""},
		{"[clock]\nhold = \"0s\"\n", 0, ""},
		{"[clock]\nhold = \"2m\"\n", 2 * time.Minute, ""},
		{"[clock]\nhold = \"168h\"\n", clocksync.MaxHold, ""},
		{"[clock]\nhold = \"169h\"\n", 0, "out of range"},
		{"[clock]\nhold = \"-1s\"\n", 0, "out of range"},
		{"[clock]\nhold = \"soon\"\n", 0, "not a duration"},
		{"[clock]\nhold = 600\n", 0, "duration string"},
		{"[clock]\nhodl = \"1m\"\n", 0, "unknown key"},
	} {
		dir := t.TempDir()
		text := strings.Replace(validConfig(t, dir), "[[sensors]]", tc.table+"\n[[sensors]]", 1)
		cfg, err := parse(t, dir, text)
		if tc.say == "" {
			if err != nil || cfg.Clock.Hold.D() != tc.want {
				t.Errorf("%q: hold %v, %v; want %v", tc.table, cfg.Clock.Hold.D(), err, tc.want)
			}
			continue
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(ce.Key, "clock.ho") || ce.Line != 18 || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("%q: %v (line %d); want clock.hold on line 18 saying %q", tc.table, err, ce.Line, tc.say)
		}
	}
}
