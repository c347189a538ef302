//go:build !linux

package agent

import (
	"errors"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
)

func systemClock() (clocksync.Machine, error) {
	return nil, errors.New("the clock rule needs Linux (adjtimex, CLOCK_BOOTTIME, boot_id)")
}
