package config

import (
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
)

// ClockConfig is the [clock] table: when readings taken before the wall
// clock could be trusted may leave (the rule is clocksync's).
type ClockConfig struct {
	// Hold is how long readings of a boot whose clock was never trusted wait
	// for the clock before they leave with their own time, marked
	// "unsynced"; 0 sends them at once (marked). Times before the build date
	// never leave (they wait for a trusted clock to correct them).
	Hold Duration `toml:"hold"`
}

func (c *Config) clockDefaults(has func(table, key string) bool) {
	if !has("clock", "hold") {
		c.Clock.Hold = Duration(clocksync.DefaultHold)
	}
}

func (c *Config) validateClock(fail func(key, format string, args ...any) error) error {
	if h := c.Clock.Hold.D(); h < 0 || h > clocksync.MaxHold {
		return fail("clock.hold", "%v is out of range: use 0s (never hold) to %v", h, clocksync.MaxHold)
	}
	return nil
}
