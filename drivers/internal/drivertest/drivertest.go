// Package drivertest is test support shared by the driver packages' tests: a
// fake clock for a driver's injected sleep and a simulated chip's time, an
// i2ctest.Playback bus that can fail one transaction like a chip that does
// not acknowledge, Sensirion word encoding for playback scripts, and the
// error check that ends a table case.
//
// Only _test.go files may import it: no driver links it into the agent
// (TestImportedOnlyByTests keeps it so).
package drivertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// Clock is a fake time shared by a driver's sleep and a simulated chip's
// clock, so tests never sleep and the chip sees exactly the waits the driver
// makes. It is not safe for concurrent use: drivers start no goroutines.
type Clock struct {
	now time.Time
	// Sleeps holds every wait the driver asked for, in order; tests reset
	// it to look at one step only.
	Sleeps []time.Duration
}

// NewClock returns a clock that reads start until something sleeps or
// advances it.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the fake time, for a simulated chip's or driver's now func.
func (c *Clock) Now() time.Time { return c.now }

// Advance moves the time forward by d without recording a sleep: the time
// that passes between two readings.
func (c *Clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// Sleep records d and moves the time forward by it; like a real sleep it
// refuses a done context.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Sleeps = append(c.Sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

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
