//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelClock is the kernel's synchronisation state (adjtimex), held by
// one test at a time. The real binary believes the wall clock only when the
// kernel says an NTP client synchronised it (DECISIONS 1); test machines run
// none, so a test that needs a trusted clock does what the NTP client does:
// it clears STA_UNSYNC and sets a small maximum error.
//
// The state is machine-wide: tests of other packages run at the same time,
// in other processes. holdKernelClock takes a file lock for the test's
// whole run and restores the state it found when the test ends, failed or
// not. The lock file keeps that state while it is changed, so that if a
// test binary dies before restoring (killed at its timeout), the next holder
// restores it first. Left alone, the kernel itself marks the clock
// unsynchronised again once the maximum error has grown past 16 s (it grows
// by 0.5 ms each second).
type kernelClock struct {
	t     *testing.T
	lock  *os.File
	saved unix.Timex
}

// kernelClockLock is the lock file shared by every test binary on the
// machine.
var kernelClockLock = filepath.Join(os.TempDir(), "cityedge-test-adjtimex.lock")

func holdKernelClock(t *testing.T) *kernelClock {
	t.Helper()
	needRoot(t)
	f, err := os.OpenFile(kernelClockLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", kernelClockLock, err)
	}
	k := &kernelClock{t: t, lock: f}
	t.Cleanup(k.release)
	if left, err := os.ReadFile(kernelClockLock); err == nil && len(left) > 0 {
		// A holder died before it restored what it had found.
		var tx unix.Timex
		if _, err := fmt.Sscanf(string(left), "status %d maxerror %d esterror %d", &tx.Status, &tx.Maxerror, &tx.Esterror); err != nil {
			t.Fatalf("%s holds %q: %v", kernelClockLock, left, err)
		}
		k.set(tx.Status, int64(tx.Maxerror), int64(tx.Esterror))
		t.Logf("restored the kernel clock state a previous test left changed: %s", strings.TrimSpace(string(left)))
	}
	if _, err := unix.Adjtimex(&k.saved); err != nil {
		t.Fatalf("adjtimex: %v", err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(fmt.Appendf(nil, "status %d maxerror %d esterror %d\n", k.saved.Status, k.saved.Maxerror, k.saved.Esterror), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		t.Fatalf("%s: %v", kernelClockLock, err)
	}
	return k
}

func (k *kernelClock) set(status int32, maxerror, esterror int64) {
	k.t.Helper()
	tx := unix.Timex{Modes: unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR, Status: status}
	setLong(&tx.Maxerror, maxerror)
	setLong(&tx.Esterror, esterror)
	if _, err := unix.Adjtimex(&tx); err != nil {
		k.t.Fatalf("adjtimex (set status %#x, maxerror %d µs): %v", status, maxerror, err)
	}
}

// setLong sets a C long field of unix.Timex: int64 on 64-bit machines,
// int32 on 32-bit ARM, where `make bench-arm` builds these tests too.
func setLong[T int32 | int64](dst *T, v int64) { *dst = T(v) }

// sync makes the kernel say what it says once an NTP client has
// synchronised the clock: STA_UNSYNC clear, maximum error 10 ms, estimated
// error 1 ms.
func (k *kernelClock) sync() {
	k.t.Helper()
	var now unix.Timex
	if _, err := unix.Adjtimex(&now); err != nil {
		k.t.Fatalf("adjtimex: %v", err)
	}
	k.set(now.Status&^unix.STA_UNSYNC, 10_000, 1_000)
}

// unsync makes the kernel say what it says on a machine without an NTP
// client: STA_UNSYNC set, maximum error 16 s.
func (k *kernelClock) unsync() {
	k.t.Helper()
	var now unix.Timex
	if _, err := unix.Adjtimex(&now); err != nil {
		k.t.Fatalf("adjtimex: %v", err)
	}
	k.set(now.Status|unix.STA_UNSYNC, 16_000_000, 16_000_000)
}

// release restores the state found and lets the next test have the clock.
func (k *kernelClock) release() {
	tx := unix.Timex{Modes: unix.ADJ_STATUS | unix.ADJ_MAXERROR | unix.ADJ_ESTERROR,
		Status: k.saved.Status, Maxerror: k.saved.Maxerror, Esterror: k.saved.Esterror}
	if _, err := unix.Adjtimex(&tx); err != nil {
		k.t.Errorf("restore the kernel clock state (status %#x): %v", k.saved.Status, err)
	} else if err := k.lock.Truncate(0); err != nil {
		k.t.Errorf("%s: %v", kernelClockLock, err)
	}
	unix.Flock(int(k.lock.Fd()), unix.LOCK_UN)
	k.lock.Close()
}
