package sht3x

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// clock is a fake time shared by the driver's sleep and the simulated chip.
type clock struct {
	t      time.Time
	sleeps []time.Duration
}

func newClock() *clock { return &clock{t: time.Date(2024, 1, 15, 8, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time { return c.t }

func (c *clock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return nil
}

// nackAt fails the n-th transaction (0-based) with sim.ErrNACK and passes
// the others to the playback.
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

func word(v uint16) []byte { return sensirion.AppendWord(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// The datasheet's CRC example word, 0xBEEF with CRC 0x92 (table 20), read as
// a measurement: T = -45 + 175·48879/65535 = 85.52 °C, RH = 74.58 %RH.
var beef = []byte{0xBE, 0xEF, 0x92}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name       string
		raw        []byte
		tempC, rh  float64
		err        error
		errContain string
	}{
		{name: "datasheet CRC example words", raw: cat(beef, beef), tempC: -45 + 175*48879.0/65535, rh: 100 * 48879.0 / 65535},
		{name: "25 °C, 50 %RH", raw: cat(word(0x6667), word(0x8000)), tempC: -45 + 175*26215.0/65535, rh: 100 * 32768.0 / 65535},
		{name: "full scale humidity", raw: cat(word(0x6667), word(0xFFFF)), tempC: -45 + 175*26215.0/65535, rh: 100},
		{name: "lower range end", raw: cat(word(1873), word(0)), tempC: -45 + 175*1873.0/65535, rh: 0},
		{name: "bad temperature CRC", raw: cat([]byte{0xBE, 0xEF, 0x93}, beef), err: sensirion.ErrCRC},
		{name: "bad humidity CRC", raw: cat(beef, []byte{0xBE, 0xEF, 0x00}), err: sensirion.ErrCRC},
		{name: "below -40 °C", raw: cat(word(0), word(0x8000)), err: errRange},
		{name: "above 125 °C", raw: cat(word(0xFFFF), word(0x8000)), err: errRange},
		{name: "short", raw: beef, errContain: "want 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode(tc.raw)
			if tc.err != nil || tc.errContain != "" {
				if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) || !strings.Contains(err.Error(), tc.errContain) {
					t.Fatalf("error %v, want %v %q", err, tc.err, tc.errContain)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-tc.tempC) > 1e-6 {
				t.Errorf("temperature %v, want %v", got, tc.tempC)
			}
			if got := float64(m.Humidity) / float64(physic.PercentRH); math.Abs(got-tc.rh) > 1e-5 {
				t.Errorf("humidity %v, want %v", got, tc.rh)
			}
		})
	}
}

func TestPlayback(t *testing.T) {
	const a = 0x45
	open := []i2ctest.IO{
		{Addr: a, W: []byte{0xF3, 0x2D}}, {Addr: a, R: word(0x8010)},
		{Addr: a, W: []byte{0x37, 0x80}}, {Addr: a, R: cat(word(0x1234), word(0x5678))},
	}
	sense := []i2ctest.IO{{Addr: a, W: []byte{0x24, 0x00}}, {Addr: a, R: cat(beef, beef)}}
	ops := func(parts ...[]i2ctest.IO) []i2ctest.IO { // fresh slices: no aliasing between cases
		var out []i2ctest.IO
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		ops      []i2ctest.IO
		nack     int
		openErr  string
		senseErr string
		str      string
	}{
		{name: "SHT31 with serial", ops: ops(open, sense), nack: -1, str: "SHT3x serial 12345678 on playback address 0x45"},
		{name: "older SHT3x without serial command", ops: ops(open[:3], sense), nack: 3, str: "SHT3x on playback address 0x45"},
		{name: "nothing at the address", nack: 0, openErr: "sht3x: read status"},
		{name: "status CRC wrong: not an SHT3x", ops: []i2ctest.IO{open[0], {Addr: a, R: []byte{0x80, 0x10, 0x00}}}, nack: -1, openErr: "not an SHT3x"},
		{name: "serial CRC wrong", ops: []i2ctest.IO{open[0], open[1], open[2], {Addr: a, R: []byte{0x12, 0x34, 0x00, 0x56, 0x78, 0x00}}}, nack: -1,
			openErr: "serial number: word 0"},
		{name: "measurement not acknowledged", ops: ops(open, sense[:1]), nack: len(open) + 1, senseErr: "sht3x: measure: command 0x2400: read"},
		{name: "measurement CRC wrong", ops: ops(open, sense[:1], []i2ctest.IO{{Addr: a, R: cat(beef, []byte{0xBE, 0xEF, 0x00})}}), nack: -1,
			senseErr: "CRC mismatch"},
		{name: "implausible temperature", ops: ops(open, sense[:1], []i2ctest.IO{{Addr: a, R: cat(word(0xFFFF), beef)}}), nack: -1,
			senseErr: "outside the datasheet range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pb := &i2ctest.Playback{Ops: tc.ops, DontPanic: true}
			t.Cleanup(func() {
				if err := pb.Close(); err != nil {
					t.Error(err)
				}
			})
			var bus i2c.Bus = pb
			if tc.nack >= 0 {
				bus = &nackAt{Playback: pb, n: tc.nack}
			}
			c := newClock()
			d, err := New(bus, &Opts{Addr: a, Sleep: c.sleep})
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("New error %v, want %q", err, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.str != "" && d.String() != tc.str {
				t.Errorf("String() = %q, want %q", d.String(), tc.str)
			}
			c.sleeps = nil
			m, err := d.Sense(context.Background())
			if tc.senseErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.senseErr) {
					t.Fatalf("Sense error %v, want %q", err, tc.senseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.sleeps) != 1 || c.sleeps[0] < 15*time.Millisecond {
				t.Errorf("waited %v for a measurement, the datasheet's maximum is 15 ms", c.sleeps)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-85.52) > 0.005 {
				t.Errorf("temperature %v, want 85.52", got)
			}
		})
	}
}

func TestSimRoundTrip(t *testing.T) {
	c := newClock()
	chip := NewSim(sim.NewWorld(11), 0xCAFE0042)
	chip.chip.Now = c.now
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x44, chip)
	d, err := New(bus, &Opts{Addr: 0x44, Sleep: c.sleep})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := d.Serial(); !ok || s != 0xCAFE0042 {
		t.Fatalf("serial %08x %v", s, ok)
	}
	for i := 0; i < 24; i++ {
		c.t = c.t.Add(time.Hour)
		m, err := d.Sense(context.Background())
		if err != nil {
			t.Fatalf("hour %d: %v", i, err)
		}
		wx := chip.Measured()
		// One tick is 175/65535 °C and 100/65535 %RH.
		if got := m.Temperature.Celsius(); math.Abs(got-wx.TempC) > 0.0014 {
			t.Errorf("hour %d: temperature %.4f, world %.4f", i, got, wx.TempC)
		}
		if got := float64(m.Humidity) / float64(physic.PercentRH); math.Abs(got-wx.RH) > 0.0008 {
			t.Errorf("hour %d: humidity %.4f, world %.4f", i, got, wx.RH)
		}
	}
}

func TestSimFaults(t *testing.T) {
	c := newClock()
	chip := NewSim(sim.NewWorld(1), 1)
	chip.chip.Now = c.now
	bus := sim.NewBus("sim")
	bus.Attach(0x44, chip)
	d, err := New(bus, &Opts{Addr: 0x44, Sleep: c.sleep})
	if err != nil {
		t.Fatal(err)
	}
	// A driver that reads before the measurement is done is refused.
	d.s.Sleep = func(context.Context, time.Duration) error { return nil }
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense without waiting: %v, want NACK", err)
	}
	d.s.Sleep = c.sleep
	c.t = c.t.Add(time.Second)
	// Unplugged, then back.
	bus.Detach(0x44)
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense with the chip gone: %v", err)
	}
	bus.Attach(0x44, chip)
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatalf("Sense after re-plug: %v", err)
	}
	if err := chip.Tx([]byte{0x2C, 0x06}, nil); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("clock-stretching command the sim does not model: %v, want NACK", err)
	}
}

func TestSenseHonoursContext(t *testing.T) {
	bus := sim.NewBus("sim")
	bus.Attach(0x44, NewSim(sim.NewWorld(1), 1))
	d, err := New(bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sense with a cancelled context: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(cat(beef, beef))
	f.Add(cat(word(0), word(0)))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		if c := m.Temperature.Celsius(); c < -40 || c > 125 {
			t.Fatalf("temperature %v outside the range", c)
		}
		if m.Humidity < 0 || m.Humidity > 100*physic.PercentRH {
			t.Fatalf("humidity %v", m.Humidity)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := cat(beef, beef)
	for b.Loop() {
		if _, err := decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
