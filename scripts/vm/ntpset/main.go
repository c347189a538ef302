//go:build linux

// Command ntpset is the emulated gateway's stand-in for an NTP client
// (scripts/vm/run.sh, issue 14). Run as root in the guest, it asks the
// host's time server (vmcheck timeserver) for the true time over TCP, steps
// the guest's wall clock to it, and then tells the kernel that the clock is
// synchronised, as ntpd, chrony and systemd-timesyncd do after their first
// exchange: adjtimex clearing STA_UNSYNC with a maximum error of 10 ms.
// Setting the time alone would not do: the kernel marks the clock
// unsynchronised on every settimeofday.
//
// It prints one line for the host's checker:
//
//	VMCLOCK: step_ns=N guest_before=T host=T rtt_ns=N unsync_before=B unsync_after=B maxerror_us=N
//
// guest_before is the guest's wall clock just before the step, host the
// host's time at that same moment (its answer plus half the round trip plus
// the time since), so host − guest_before = step is what every earlier
// guest wall time was off by.
//
//	ntpset HOST:PORT
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "ntpset: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: ntpset HOST:PORT")
	}
	var before unix.Timex
	if _, err := unix.Adjtimex(&before); err != nil {
		return fmt.Errorf("adjtimex: %w", err)
	}
	sent := time.Now()
	conn, err := net.DialTimeout("tcp", args[0], 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read the host's time: %w", err)
	}
	got := time.Now()
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("the host's answer %q: %w", line, err)
	}
	rtt := got.Sub(sent) // monotonic
	// The host read its clock about halfway through the exchange.
	guest := time.Now()
	truth := ns + int64(rtt/2) + int64(guest.Sub(got))
	ts := unix.NsecToTimespec(truth)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_settime: %w", err)
	}
	tx := unix.Timex{Modes: unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Status: before.Status &^ unix.STA_UNSYNC, Maxerror: 10_000, Esterror: 1_000}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return fmt.Errorf("adjtimex (clear STA_UNSYNC): %w", err)
	}
	var after unix.Timex
	if _, err := unix.Adjtimex(&after); err != nil {
		return fmt.Errorf("adjtimex: %w", err)
	}
	fmt.Printf("VMCLOCK: step_ns=%d guest_before=%s host=%s rtt_ns=%d unsync_before=%t unsync_after=%t maxerror_us=%d\n",
		truth-guest.UnixNano(), guest.UTC().Format(time.RFC3339Nano), time.Unix(0, truth).UTC().Format(time.RFC3339Nano),
		rtt.Nanoseconds(), before.Status&unix.STA_UNSYNC != 0, after.Status&unix.STA_UNSYNC != 0, after.Maxerror)
	return nil
}
