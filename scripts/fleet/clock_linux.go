package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// markClockSynced does what an NTP client does once it has synchronised
// the clock: it clears the kernel's STA_UNSYNC flag and sets a small error
// estimate (adjtimex, needs root). The time itself is not touched. The
// returned function puts the previous status and error estimate back.
// (DECISIONS 1: agents that hold readings until the clock is trustworthy
// must see a synced clock in tests that expect delivery.)
func markClockSynced() (restore func() error, err error) {
	var old unix.Timex
	if _, err := unix.Adjtimex(&old); err != nil {
		return nil, fmt.Errorf("adjtimex (read): %w", err)
	}
	tx := unix.Timex{
		Modes:    unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Status:   old.Status &^ unix.STA_UNSYNC,
		Maxerror: 100_000, // µs
		Esterror: 10_000,
	}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return nil, fmt.Errorf("adjtimex: clear STA_UNSYNC (needs root): %w", err)
	}
	return func() error {
		back := unix.Timex{
			Modes:    unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
			Status:   old.Status,
			Maxerror: old.Maxerror,
			Esterror: old.Esterror,
		}
		_, err := unix.Adjtimex(&back)
		return err
	}, nil
}
