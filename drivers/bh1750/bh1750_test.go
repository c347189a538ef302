package bh1750

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/bh1750/bh1750sim"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		raw  []byte
		mt   uint8
		want Illuminance
		err  string
	}{
		// The technical note's example (p. 10): 1000_0011 1001_0000 is
		// (2^15 + 2^9 + 2^8 + 2^7 + 2^4) / 1.2 ≈ 28067 lx.
		{[]byte{0x83, 0x90}, 69, 28066667 * MilliLux, ""},
		{[]byte{0x00, 0x00}, 69, 0, ""},
		{[]byte{0x00, 0x01}, 69, 833 * MilliLux, ""},
		{[]byte{0xFF, 0xFE}, 69, 54611667 * MilliLux, ""},
		// MTreg scales the result by 69 / MTreg.
		{[]byte{0xFF, 0xFE}, 31, 121555000 * MilliLux, ""},
		{[]byte{0x00, 0x01}, 254, 226 * MilliLux, ""},
		{[]byte{0x83, 0x90}, 138, 14033333 * MilliLux, ""},
		{[]byte{0xFF, 0xFF}, 69, 0, "saturated: more than 54612.5lx"},
		{[]byte{0xFF, 0xFF}, 31, 0, "saturated: more than 121556.854lx"},
		{[]byte{0x83}, 69, 0, "1 bytes, want 2"},
		{[]byte{0x83, 0x90}, 30, 0, "MTreg 30"},
		{[]byte{0x83, 0x90}, 255, 0, "MTreg 255"},
	}
	for _, tc := range cases {
		got, err := decode(tc.raw, tc.mt)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("decode(% x, %d) = %s, %v; want an error containing %q", tc.raw, tc.mt, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("decode(% x, %d) = %s, %v; want %s", tc.raw, tc.mt, got, err, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	op := func(b byte) i2ctest.IO { return i2ctest.IO{Addr: 0x23, W: []byte{b}} }
	cases := []struct {
		name   string
		opts   *Opts
		ops    []i2ctest.IO
		nackAt int
		err    string
		nacked bool // the error the case ends on comes from the NACK
	}{
		{"default MTreg 69 = 010_00101", nil, []i2ctest.IO{op(0x01), op(0x42), op(0x65)}, -1, "", false},
		{"MTreg 31 = 000_11111", &Opts{Addr: 0x23, MTreg: 31}, []i2ctest.IO{op(0x01), op(0x40), op(0x7F)}, -1, "", false},
		{"MTreg 254 = 111_11110", &Opts{Addr: 0x23, MTreg: 254}, []i2ctest.IO{op(0x01), op(0x47), op(0x7E)}, -1, "", false},
		{"MTreg 30", &Opts{Addr: 0x23, MTreg: 30}, nil, -1, "MTreg 30 is outside 31..254", false},
		{"nothing there", nil, nil, 0, "power on", true},
		{"stops answering", nil, []i2ctest.IO{op(0x01)}, 1, "MTreg high bits", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(drivertest.Playback(t, tc.ops, tc.nackAt), tc.opts)
			if drivertest.WantErr(t, "New", err, tc.err) {
				drivertest.WantNACK(t, "New", err, tc.nackAt, tc.nacked)
			}
		})
	}
}

func TestSense(t *testing.T) {
	on := i2ctest.IO{Addr: 0x23, W: []byte{0x01}}
	start := i2ctest.IO{Addr: 0x23, W: []byte{0x20}}
	read := func(hi, lo byte) i2ctest.IO { return i2ctest.IO{Addr: 0x23, R: []byte{hi, lo}} }
	cases := []struct {
		name   string
		mt     uint8
		ops    []i2ctest.IO
		nackAt int
		want   Illuminance
		sleeps []time.Duration
		err    string
		nacked bool // the error the case ends on comes from the NACK
	}{
		{"datasheet example", 69, []i2ctest.IO{on, start, read(0x83, 0x90)}, -1, 28066667 * MilliLux, []time.Duration{180 * time.Millisecond}, "", false},
		{"short MTreg waits less", 31, []i2ctest.IO{on, start, read(0x83, 0x90)}, -1, 62470968 * MilliLux,
			[]time.Duration{(180*time.Millisecond*31 + 68) / 69}, "", false},
		{"long MTreg waits more", 254, []i2ctest.IO{on, start, read(0x00, 0x0A)}, -1, 2264 * MilliLux,
			[]time.Duration{(180*time.Millisecond*254 + 68) / 69}, "", false},
		{"saturated", 69, []i2ctest.IO{on, start, read(0xFF, 0xFF)}, -1, 0, []time.Duration{180 * time.Millisecond}, "saturated", false},
		{"nack on power on", 69, nil, 0, 0, nil, "power on", true},
		{"nack on start", 69, []i2ctest.IO{on}, 1, 0, nil, "start measurement", true},
		{"nack on read", 69, []i2ctest.IO{on, start}, 2, 0, []time.Duration{180 * time.Millisecond}, "read measurement", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := drivertest.NewClock(time.Unix(0, 0))
			d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, tc.ops, tc.nackAt), Addr: 0x23}, mt: tc.mt, clock: c}
			got, err := d.Sense(context.Background())
			if !slices.Equal(c.Sleeps, tc.sleeps) {
				t.Errorf("slept %v, want %v", c.Sleeps, tc.sleeps)
			}
			if drivertest.WantErr(t, "Sense", err, tc.err) {
				drivertest.WantNACK(t, "Sense", err, tc.nackAt, tc.nacked)
				return
			}
			if got != tc.want {
				t.Errorf("Sense() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSenseHonoursContext(t *testing.T) {
	ops := []i2ctest.IO{{Addr: 0x23, W: []byte{0x01}}, {Addr: 0x23, W: []byte{0x20}}}
	d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, ops, -1), Addr: 0x23}, mt: 69, clock: clockwork.NewRealClock()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sense with a cancelled context: %v", err)
	}
}

// Sim → New/Sense through sim.Bus on a fake clock over a simulated day: the
// decoded illuminance matches the world's within one count.
func TestSimRoundTrip(t *testing.T) {
	for _, mt := range []uint8{31, 69, 254} {
		c := drivertest.NewClock(time.Date(2025, 6, 21, 0, 0, 0, 0, time.UTC))
		chip := bh1750sim.NewSim(sim.NewWorld(11))
		chip.SetClock(c)
		bus := sim.NewBus("sim-i2c1")
		bus.Attach(0x5C, chip)
		d, err := New(bus, &Opts{Addr: 0x5C, MTreg: mt})
		if err != nil {
			t.Fatal(err)
		}
		d.clock = c
		saturated := 0
		for i := 0; i < 24*6; i++ {
			c.Advance(10 * time.Minute)
			got, err := d.Sense(context.Background())
			truth := chip.Lux()
			limit := 65534 / 1.2 * 69 / float64(mt)
			if truth > limit {
				if err == nil || !strings.Contains(err.Error(), "saturated") {
					t.Fatalf("MTreg %d at %.0f lx (beyond %.0f): %s, %v; want saturated", mt, truth, limit, got, err)
				}
				saturated++
				continue
			}
			if err != nil {
				t.Fatalf("MTreg %d at %.0f lx: %v", mt, truth, err)
			}
			count := 1 / 1.2 * 69 / float64(mt)
			if diff := math.Abs(float64(got)/float64(Lux) - truth); diff > count/2+0.001 {
				t.Fatalf("MTreg %d: decoded %s, world %.3f lx (more than half a count of %.3f lx off)", mt, got, truth, count)
			}
		}
		if mt == 254 && saturated == 0 {
			t.Error("MTreg 254 never saturated at noon: the saturation path was not exercised")
		}
	}
}

func TestSimStateMachine(t *testing.T) {
	c := drivertest.NewClock(time.Unix(0, 0))
	chip := bh1750sim.NewSim(nil)
	chip.SetClock(c)
	step := func(w []byte, r []byte) error { return chip.Tx(w, r) }
	if err := step([]byte{0x20}, nil); err == nil || !strings.Contains(err.Error(), "powered down") {
		t.Errorf("measurement while powered down: %v", err)
	}
	if err := step([]byte{0x07}, nil); err == nil {
		t.Error("reset while powered down accepted")
	}
	if err := step([]byte{0x01, 0x20}, nil); err == nil || !strings.Contains(err.Error(), "one opcode per write") {
		t.Errorf("two opcodes in one write: %v", err)
	}
	if err := step([]byte{0x02}, nil); err == nil || !strings.Contains(err.Error(), "unknown opcode") {
		t.Errorf("unknown opcode: %v", err)
	}
	// A read before the measurement time returns the previous result.
	for _, op := range []byte{0x01, 0x20} {
		if err := step([]byte{op}, nil); err != nil {
			t.Fatal(err)
		}
	}
	r := make([]byte, 2)
	c.Advance(50 * time.Millisecond)
	if err := step(nil, r); err != nil || r[0] != 0 || r[1] != 0 {
		t.Errorf("early read: % x, %v; want the old (zero) data register", r, err)
	}
	c.Advance(100 * time.Millisecond)
	if err := step(nil, r); err != nil || r[0] != 0x02 || r[1] != 0x58 {
		t.Errorf("read after the measurement: % x, %v; want 500 lx × 1.2 = 600 = 02 58", r, err)
	}
	// The one-time measurement powered the chip down.
	if err := step([]byte{0x20}, nil); err == nil {
		t.Error("a second one-time measurement without power on was accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x83, 0x90}, uint8(69))
	f.Add([]byte{0xFF, 0xFF}, uint8(31))
	f.Add([]byte{0x00}, uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, mt uint8) {
		if got, err := decode(raw, mt); err == nil {
			drivertest.InRange(t, fmt.Sprintf("decode(% x, %d)", raw, mt), got, 0, 122000*Lux)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := []byte{0x83, 0x90}
	for b.Loop() {
		if _, err := decode(raw, MTregDefault); err != nil {
			b.Fatal(err)
		}
	}
}
