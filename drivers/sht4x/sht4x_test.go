package sht4x

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

type clock struct {
	t      time.Time
	sleeps []time.Duration
}

func newClock() *clock { return &clock{t: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time { return c.t }

func (c *clock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	return nil
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

func word(v uint16) []byte { return sensirion.AppendWord(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ops(parts ...[]i2ctest.IO) []i2ctest.IO {
	var out []i2ctest.IO
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// The datasheet's CRC example: 0xBEEF has CRC 0x92.
var beef = []byte{0xBE, 0xEF, 0x92}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		raw       []byte
		tempC, rh float64
		err       error
	}{
		{name: "datasheet CRC example words", raw: cat(beef, beef), tempC: -45 + 175*48879.0/65535, rh: -6 + 125*48879.0/65535},
		{name: "25 °C, 50 %RH", raw: cat(word(26215), word(29884)), tempC: -45 + 175*26215.0/65535, rh: -6 + 125*29884.0/65535},
		{name: "humidity cropped at 0", raw: cat(word(26215), word(0)), tempC: -45 + 175*26215.0/65535, rh: 0},
		{name: "humidity cropped at 100", raw: cat(word(26215), word(0xFFFF)), tempC: -45 + 175*26215.0/65535, rh: 100},
		{name: "bad CRC", raw: cat(beef, []byte{0xBE, 0xEF, 0x91}), err: sensirion.ErrCRC},
		{name: "below -40 °C", raw: cat(word(100), beef), err: errRange},
		{name: "above 125 °C", raw: cat(word(0xFFFF), beef), err: errRange},
		{name: "short", raw: beef, err: errors.New("want 6")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode(tc.raw)
			if tc.err != nil {
				if err == nil || !(errors.Is(err, tc.err) || strings.Contains(err.Error(), tc.err.Error())) {
					t.Fatalf("error %v, want %v", err, tc.err)
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
	const a = 0x44
	open := []i2ctest.IO{{Addr: a, W: []byte{0x89}}, {Addr: a, R: cat(word(0x0F3C), word(0x5A21))}}
	sense := []i2ctest.IO{{Addr: a, W: []byte{0xFD}}, {Addr: a, R: cat(beef, beef)}}
	for _, tc := range []struct {
		name     string
		ops      []i2ctest.IO
		nack     int
		openErr  string
		senseErr string
	}{
		{name: "SHT40", ops: ops(open, sense), nack: -1},
		{name: "nothing at the address", nack: 0, openErr: "sht4x: read serial number"},
		{name: "not an SHT4x: serial read not acknowledged", ops: open[:1], nack: 1, openErr: "sht4x: read serial number: command 0x89: read"},
		{name: "serial CRC wrong", ops: ops(open[:1], []i2ctest.IO{{Addr: a, R: cat(word(0x0F3C), []byte{0x5A, 0x21, 0x00})}}), nack: -1,
			openErr: "not an SHT4x?"},
		{name: "measurement not acknowledged", ops: ops(open, sense[:1]), nack: 3, senseErr: "sht4x: measure: command 0xfd: read"},
		{name: "measurement CRC wrong", ops: ops(open, sense[:1], []i2ctest.IO{{Addr: a, R: cat([]byte{0xBE, 0xEF, 0x00}, beef)}}), nack: -1,
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
			if d.Serial() != 0x0F3C5A21 || d.String() != "SHT4x serial 0f3c5a21 on playback address 0x44" {
				t.Errorf("serial %08x, String %q", d.Serial(), d.String())
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
			if len(c.sleeps) != 1 || c.sleeps[0] < 8300*time.Microsecond {
				t.Errorf("waited %v, the datasheet's maximum is 8.3 ms", c.sleeps)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-85.52) > 0.005 {
				t.Errorf("temperature %v", got)
			}
		})
	}
}

func TestSimRoundTrip(t *testing.T) {
	c := newClock()
	chip := NewSim(sim.NewWorld(21), 0x12345678)
	chip.chip.Now = c.now
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x44, chip)
	d, err := New(bus, &Opts{Addr: 0x44, Sleep: c.sleep})
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial() != 0x12345678 {
		t.Fatalf("serial %08x", d.Serial())
	}
	for i := 0; i < 24; i++ {
		c.t = c.t.Add(time.Hour)
		m, err := d.Sense(context.Background())
		if err != nil {
			t.Fatalf("hour %d: %v", i, err)
		}
		wx := chip.Measured()
		if got := m.Temperature.Celsius(); math.Abs(got-wx.TempC) > 0.0014 {
			t.Errorf("hour %d: temperature %.4f, world %.4f", i, got, wx.TempC)
		}
		if got := float64(m.Humidity) / float64(physic.PercentRH); math.Abs(got-wx.RH) > 0.001 {
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
	d.s.Sleep = func(context.Context, time.Duration) error { return nil }
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense without waiting: %v, want NACK", err)
	}
	d.s.Sleep = c.sleep
	c.t = c.t.Add(time.Second)
	bus.Fail(0x44, sim.ErrNACK)
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense on a silent chip: %v", err)
	}
	bus.Fail(0x44, nil)
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatalf("Sense after recovery: %v", err)
	}
	for _, w := range [][]byte{{0xF6}, {0x24, 0x00}} {
		if err := chip.Tx(w, nil); !errors.Is(err, sim.ErrNACK) {
			t.Errorf("command %#v the sim does not model: %v, want NACK", w, err)
		}
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
	f.Add([]byte{0x01})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		if c := m.Temperature.Celsius(); c < -40 || c > 125 {
			t.Fatalf("temperature %v outside the range", c)
		}
		if m.Humidity < 0 || m.Humidity > 100*physic.PercentRH {
			t.Fatalf("humidity %v not cropped", m.Humidity)
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
