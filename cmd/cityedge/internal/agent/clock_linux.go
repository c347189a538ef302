package agent

import "github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"

func systemClock() (clocksync.Machine, error) { return clocksync.NewSystem() }
