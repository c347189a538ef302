package main

import (
	"runtime/debug"
	"time"
)

// buildTime is when this binary's code was committed: -ldflags' buildDate,
// else the VCS time the toolchain recorded; zero when neither is known (the
// clock rule then assumes clocksync.Floor). No wall time before it is
// believed (DECISIONS 3).
func buildTime() time.Time {
	date := buildDate
	if bi, ok := debug.ReadBuildInfo(); ok && date == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				date = s.Value
			}
		}
	}
	t, err := time.Parse(time.RFC3339, date)
	if err != nil {
		return time.Time{}
	}
	return t
}
