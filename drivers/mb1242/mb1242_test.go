package mb1242

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/mb1242/mb1242sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		raw  []byte
		want physic.Distance
		err  string
	}{
		{[]byte{0x00, 0x96}, 150 * centimetre, ""},
		{[]byte{0x01, 0x2C}, 3 * physic.Metre, ""},
		{[]byte{0x00, 0x14}, 20 * centimetre, ""},  // the closest it reports
		{[]byte{0x02, 0xFD}, 765 * centimetre, ""}, // the farthest
		{[]byte{0x02, 0xFE}, 0, "range 766 cm is outside"},
		{[]byte{0x00, 0x00}, 0, "range 0 cm is outside"},
		{[]byte{0x00, 0x13}, 0, "range 19 cm is outside"},
		{[]byte{0xFF, 0xFF}, 0, "range 65535 cm"},
		{[]byte{0x01}, 0, "1 bytes, want 2"},
	}
	for _, tc := range cases {
		got, err := decode(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("decode(% x) = %s, %v; want an error containing %q", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("decode(% x) = %s, %v; want %s", tc.raw, got, err, tc.want)
		}
	}
}

func TestSense(t *testing.T) {
	cmd := i2ctest.IO{Addr: 0x70, W: []byte{0x51}}
	read := func(hi, lo byte) i2ctest.IO { return i2ctest.IO{Addr: 0x70, R: []byte{hi, lo}} }
	cases := []struct {
		name    string
		ops     []i2ctest.IO
		nackAt  int
		since   time.Duration // since the previous command; 0 = none
		want    physic.Distance
		sleeps  []time.Duration
		err     string
		errNACK bool
	}{
		{"ground", []i2ctest.IO{cmd, read(0x01, 0x04)}, -1, 0, 260 * centimetre, []time.Duration{100 * time.Millisecond}, "", false},
		{"roof", []i2ctest.IO{cmd, read(0x00, 0x6E)}, -1, time.Second, 110 * centimetre, []time.Duration{100 * time.Millisecond}, "", false},
		{"echoes of a ping 30 ms ago fade first", []i2ctest.IO{cmd, read(0x00, 0x6E)}, -1, 30 * time.Millisecond, 110 * centimetre,
			[]time.Duration{70 * time.Millisecond, 100 * time.Millisecond}, "", false},
		{"command not acknowledged", nil, 0, 0, 0, nil, "range command", true},
		{"still ranging at the read", []i2ctest.IO{cmd}, 1, 0, 0, []time.Duration{100 * time.Millisecond}, "read range", true},
		{"implausible", []i2ctest.IO{cmd, read(0x00, 0x00)}, -1, 0, 0, []time.Duration{100 * time.Millisecond}, "range 0 cm", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := drivertest.NewClock(time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC))
			d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, tc.ops, tc.nackAt), Addr: 0x70}, clock: c}
			if tc.since > 0 {
				d.lastCmd = c.Now().Add(-tc.since)
			}
			got, err := d.Sense(context.Background())
			if !slices.Equal(c.Sleeps, tc.sleeps) {
				t.Errorf("slept %v, want %v", c.Sleeps, tc.sleeps)
			}
			if drivertest.WantErr(t, "Sense", err, tc.err) {
				if got := errors.Is(err, sim.ErrNACK); got != tc.errNACK || got != (tc.nackAt >= 0) {
					t.Errorf("Sense: %v: wraps sim.ErrNACK %v, want %v (NACK injected at transaction %d)", err, got, tc.errNACK, tc.nackAt)
				}
				return
			}
			if got != tc.want {
				t.Errorf("Sense() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	ok := []i2ctest.IO{{Addr: 0x71, W: []byte{0x51}}, {Addr: 0x71, R: []byte{0x01, 0x04}}}
	if _, err := New(drivertest.Playback(t, ok, -1), &Opts{Addr: 0x71}); err != nil {
		t.Fatal(err)
	}
	// Something at 0x70 that takes the command but answers nonsense.
	bad := []i2ctest.IO{{Addr: 0x70, W: []byte{0x51}}, {Addr: 0x70, R: []byte{0x00, 0x00}}}
	_, err := New(drivertest.Playback(t, bad, -1), nil)
	if err == nil || !strings.Contains(err.Error(), "range 0 cm") || !strings.Contains(err.Error(), "no identity register") {
		t.Errorf("New on a chip answering 0 cm: %v", err)
	}
	if _, err := New(drivertest.Playback(t, nil, 0), nil); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("New with nothing at the address: %v", err)
	}
}

func TestSenseHonoursContext(t *testing.T) {
	d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, []i2ctest.IO{{Addr: 0x70, W: []byte{0x51}}}, -1), Addr: 0x70}, clock: clockwork.NewRealClock()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sense with a cancelled context: %v", err)
	}
}

// Sim → Sense through sim.Bus on a fake clock, over hours of parking: every
// reading is the ground or a roof, matching the bay.
func TestSimRoundTrip(t *testing.T) {
	c := drivertest.NewClock(time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC))
	bay := sim.NewBay(5, 3*time.Minute)
	chip := mb1242sim.NewSim(bay, 5)
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x70, chip)
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: 0x70}, clock: c}
	changes, prev := 0, false
	for i := 0; i < 4*3600; i++ {
		c.Advance(time.Second)
		occ := bay.Occupied(c.Now()) // the ping goes out now
		got, err := d.Sense(context.Background())
		if err != nil {
			t.Fatalf("reading %d: %v", i, err)
		}
		if occ != prev {
			changes, prev = changes+1, occ
		}
		m := float64(got) / float64(physic.Metre)
		if occ && !(m >= 0.75 && m <= 1.35) || !occ && !(m >= 2.55 && m <= 2.65) {
			t.Fatalf("reading %d: %.2f m with the bay occupied=%v", i, m, occ)
		}
	}
	if changes < 40 {
		t.Fatalf("only %d bay changes in 4 simulated hours", changes)
	}
}

// The simulated sensor ignores the bus while it ranges, as the real one.
func TestSimBusyWhileRanging(t *testing.T) {
	c := drivertest.NewClock(time.Unix(0, 0))
	chip := mb1242sim.NewSim(nil, 1)
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x70, chip)
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: 0x70}, clock: drivertest.NewClock(time.Unix(0, 0))} // a clock the chip does not see: reads too early
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) || !strings.Contains(err.Error(), "read range") {
		t.Errorf("read right after the command: %v, want a NACK", err)
	}
	for _, w := range [][]byte{{0x50}, {0x51, 0x00}, {0xAA, 0xA5, 0xE2}} {
		c.Advance(time.Second)
		if err := chip.Tx(w, nil); err == nil {
			t.Errorf("sim accepted % x", w)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x00, 0x96})
	f.Add([]byte{0x02, 0xFD})
	f.Add([]byte{0xFF})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, err := decode(raw); err == nil {
			drivertest.InRange(t, fmt.Sprintf("decode(% x)", raw), got, 20*centimetre, 765*centimetre)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := []byte{0x01, 0x04}
	for b.Loop() {
		if _, err := decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
