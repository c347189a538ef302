// Package clocksync decides when a reading's wall time can be trusted, and
// corrects the times of readings taken before it could.
//
// Most gateways have no battery-backed clock: they boot at 1970 or at a stale
// fake-hwclock time and learn the true time from NTP minutes later. Every
// reading is therefore stamped with three things (Stamp): its wall time, the
// kernel's boot time (CLOCK_BOOTTIME, monotonic across suspend) and the boot
// it was taken in. Once the wall clock is trustworthy — the kernel says it is
// synchronised, its wall time is not before the binary's build date, and it
// has not stepped since the last look — the wall time of boot zero is known,
// and any reading of the same boot gets
//
//	sync_wall − (sync_boottime − reading_boottime)
//
// as its time (Tracker.Release), marked "corrected". Readings that can never
// be corrected (an earlier boot that never saw a synchronised clock, or a
// gateway that never syncs within the hold time) leave with the wall time they
// had, marked "unsynced" — unless that time is before the build date: such a
// time is certainly wrong and never leaves.
//
// The agent takes a Stamp for every reading (Tracker.Stamp), asks Check on a
// timer (about every second), and asks Release before it sends a reading.
package clocksync
