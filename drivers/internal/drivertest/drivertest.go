// Package drivertest is test support shared by the driver packages' tests: a
// fake clock for a driver's injected clock and a simulated chip's time, an
// i2ctest.Playback bus that can fail one transaction like a chip that does
// not acknowledge, Sensirion word encoding for playback scripts, and the
// error checks that end a table case (WantErr, WantNACK) and the range check
// of a decoder's Fuzz target (InRange).
//
// Only _test.go files may import it: no driver links it into the agent
// (TestImportedOnlyByTests keeps it so).
package drivertest

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// Clock is a fake clockwork.Clock shared by a driver and a simulated chip,
// so tests never sleep and the chip sees exactly the waits the driver makes.
// Unlike clockwork's own fake, whose timers fire only when another goroutine
// advances it, every timer or sleep moves this clock forward by its duration
// at once and fires: drivers start no goroutines, so nobody else could.
// It is not safe for concurrent use.
type Clock struct {
	*clockwork.FakeClock
	// Sleeps holds every wait the driver asked for, in order; tests reset
	// it to look at one step only.
	Sleeps []time.Duration
}

var _ clockwork.Clock = (*Clock)(nil)

// NewClock returns a clock that reads start until something waits on it or
// advances it. Advance (from the embedded fake) moves the time without
// recording a wait: the time that passes between two readings.
func NewClock(start time.Time) *Clock {
	return &Clock{FakeClock: clockwork.NewFakeClockAt(start)}
}

// NewTimer records d, moves the time forward by d and returns a timer that
// has fired.
func (c *Clock) NewTimer(d time.Duration) clockwork.Timer {
	c.Sleeps = append(c.Sleeps, d)
	c.FakeClock.Advance(d)
	return c.FakeClock.NewTimer(0)
}

// After is NewTimer(d).Chan().
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).Chan() }

// Sleep records d and moves the time forward by it.
func (c *Clock) Sleep(d time.Duration) { <-c.After(d) }

// Playback returns a bus that plays ops back in order, as i2ctest.Playback
// does, except that transaction number nack (counting from 0; -1 for none)
// fails with sim.ErrNACK, as from a chip that does not acknowledge, and is
// not played. The test fails at cleanup unless every op was played.
func Playback(t testing.TB, ops []i2ctest.IO, nack int) i2c.Bus {
	t.Helper()
	pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
	t.Cleanup(func() {
		if err := pb.Close(); err != nil {
			t.Error(err)
		}
	})
	if nack < 0 {
		return pb
	}
	return &nackAt{Playback: pb, n: nack}
}

type nackAt struct {
	*i2ctest.Playback
	n, count int
}

func (b *nackAt) Tx(addr uint16, w, r []byte) error {
	b.count++
	if b.count-1 == b.n {
		return fmt.Errorf("playback: address %#02x: %w", addr, sim.ErrNACK)
	}
	return b.Playback.Tx(addr, w, r)
}

// Words encodes v as a Sensirion sensor sends it: each word big endian and
// followed by its CRC-8.
func Words(v ...uint16) []byte {
	var b []byte
	for _, w := range v {
		b = sensirion.AppendWord(b, w)
	}
	return b
}

// WantErr checks the error of step (a name for the message) against want, a
// part of the expected message or "" for success, and stops the test on a
// mismatch. It reports whether an error was wanted, that is whether the case
// ends here.
func WantErr(t testing.TB, step string, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("%s: %v", step, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("%s: error %v, want one containing %q", step, err, want)
	}
	return want != ""
}

// WantNACK checks that the error a case ended on wraps sim.ErrNACK exactly
// when the case says so (nacked), and that the case injects a NACK (nack >= 0)
// exactly then: the playback's own "unexpected Tx" error reads much like a
// refused transaction, so the message alone cannot tell a missing NACK from a
// script that ran out, and nacked is kept apart from nack so that dropping the
// injection alone fails the case.
func WantNACK(t testing.TB, step string, err error, nack int, nacked bool) {
	t.Helper()
	if nacked != (nack >= 0) {
		t.Errorf("%s: the case expects a NACK error %v but injects a NACK at transaction %d", step, nacked, nack)
	}
	if got := errors.Is(err, sim.ErrNACK); got != nacked {
		t.Errorf("%s: %v: wraps sim.ErrNACK %v, want %v", step, err, got, nacked)
	}
}

// InRange is the range check of a decoder's Fuzz target: a value decode
// returned without an error must lie within lo..hi, the datasheet's range.
// It stops the test naming what (e.g. "temperature °C") otherwise; NaN is
// never in range.
func InRange[T cmp.Ordered](t testing.TB, what string, v, lo, hi T) {
	t.Helper()
	if !(v >= lo && v <= hi) {
		t.Fatalf("%s %v outside %v..%v without an error", what, v, lo, hi)
	}
}
