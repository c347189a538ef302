package sht3x

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sht3x/sht3xsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// Each chip's tests start at their own date and hour, so the chips' round trips see different street weather.
func newClock() *drivertest.Clock {
	return drivertest.NewClock(time.Date(2024, 1, 15, 8, 0, 0, 0, time.UTC))
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
		{name: "datasheet CRC example words", raw: slices.Concat(beef, beef), tempC: -45 + 175*48879.0/65535, rh: 100 * 48879.0 / 65535},
		{name: "25 °C, 50 %RH", raw: drivertest.Words(0x6667, 0x8000), tempC: -45 + 175*26215.0/65535, rh: 100 * 32768.0 / 65535},
		{name: "full scale humidity", raw: drivertest.Words(0x6667, 0xFFFF), tempC: -45 + 175*26215.0/65535, rh: 100},
		{name: "lower range end", raw: drivertest.Words(1873, 0), tempC: -45 + 175*1873.0/65535, rh: 0},
		{name: "bad temperature CRC", raw: slices.Concat([]byte{0xBE, 0xEF, 0x93}, beef), err: sensirion.ErrCRC},
		{name: "bad humidity CRC", raw: slices.Concat(beef, []byte{0xBE, 0xEF, 0x00}), err: sensirion.ErrCRC},
		{name: "below -40 °C", raw: drivertest.Words(0, 0x8000), err: sensirion.ErrRange},
		{name: "above 125 °C", raw: drivertest.Words(0xFFFF, 0x8000), err: sensirion.ErrRange},
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

// Deliberately this chip's own table, not shared with its Sensirion siblings: its bytes and waits come from its own datasheet.
func TestPlayback(t *testing.T) {
	const a = 0x45
	open := []i2ctest.IO{
		{Addr: a, W: []byte{0xF3, 0x2D}}, {Addr: a, R: drivertest.Words(0x8010)},
		{Addr: a, W: []byte{0x37, 0x80}}, {Addr: a, R: drivertest.Words(0x1234, 0x5678)},
	}
	sense := []i2ctest.IO{{Addr: a, W: []byte{0x24, 0x00}}, {Addr: a, R: slices.Concat(beef, beef)}}
	for _, tc := range []struct {
		name     string
		ops      []i2ctest.IO
		nack     int
		nacked   bool // the error the case ends on comes from the NACK
		openErr  string
		senseErr string
		str      string
	}{
		{name: "SHT31 with serial", ops: slices.Concat(open, sense), nack: -1, str: "SHT3x serial 12345678 on playback address 0x45"},
		{name: "older SHT3x without serial command", ops: slices.Concat(open[:3], sense), nack: 3, str: "SHT3x on playback address 0x45"},
		{name: "nothing at the address", nacked: true, nack: 0, openErr: "sht3x: read status"},
		{name: "status CRC wrong: not an SHT3x", ops: []i2ctest.IO{open[0], {Addr: a, R: []byte{0x80, 0x10, 0x00}}}, nack: -1, openErr: "not an SHT3x"},
		{name: "serial CRC wrong", ops: []i2ctest.IO{open[0], open[1], open[2], {Addr: a, R: []byte{0x12, 0x34, 0x00, 0x56, 0x78, 0x00}}}, nack: -1,
			openErr: "serial number: word 0"},
		{name: "measurement not acknowledged", nacked: true, ops: slices.Concat(open, sense[:1]), nack: len(open) + 1, senseErr: "sht3x: measure: command 0x2400: read"},
		{name: "measurement CRC wrong", ops: slices.Concat(open, sense[:1], []i2ctest.IO{{Addr: a, R: slices.Concat(beef, []byte{0xBE, 0xEF, 0x00})}}), nack: -1,
			senseErr: "CRC mismatch"},
		{name: "implausible temperature", ops: slices.Concat(open, sense[:1], []i2ctest.IO{{Addr: a, R: slices.Concat(drivertest.Words(0xFFFF), beef)}}), nack: -1,
			senseErr: "outside the datasheet range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			d, err := New(drivertest.Playback(t, tc.ops, tc.nack), &Opts{Addr: a, Clock: c})
			if drivertest.WantErr(t, "New", err, tc.openErr) {
				drivertest.WantNACK(t, "New", err, tc.nack, tc.nacked)
				return
			}
			if tc.str != "" && d.String() != tc.str {
				t.Errorf("String() = %q, want %q", d.String(), tc.str)
			}
			c.Sleeps = nil
			m, err := d.Sense(context.Background())
			if drivertest.WantErr(t, "Sense", err, tc.senseErr) {
				drivertest.WantNACK(t, "Sense", err, tc.nack, tc.nacked)
				return
			}
			if len(c.Sleeps) != 1 || c.Sleeps[0] < 15*time.Millisecond {
				t.Errorf("waited %v for a measurement, the datasheet's maximum is 15 ms", c.Sleeps)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-85.52) > 0.005 {
				t.Errorf("temperature %v, want 85.52", got)
			}
		})
	}
}

// newSimDev opens the driver at 0x44 on a simulated chip with serial, its
// world from seed, on a fake clock.
func newSimDev(t *testing.T, seed uint64, serial uint32) (*drivertest.Clock, *sht3xsim.Sim, *sim.Bus, *Dev) {
	t.Helper()
	c := newClock()
	chip := sht3xsim.NewSim(sim.NewWorld(seed), serial)
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x44, chip)
	d, err := New(bus, &Opts{Addr: 0x44, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return c, chip, bus, d
}

// Deliberately its own copy of the round trip: it checks this chip's simulator against its driver, each written from the datasheet alone.
func TestSimRoundTrip(t *testing.T) {
	c, chip, _, d := newSimDev(t, 11, 0xCAFE0042)
	if s, ok := d.Serial(); !ok || s != 0xCAFE0042 {
		t.Fatalf("serial %08x %v", s, ok)
	}
	for i := 0; i < 24; i++ {
		c.Advance(time.Hour)
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
	c, chip, bus, d := newSimDev(t, 1, 1)
	// A driver that reads before the measurement is done is refused.
	d.s.Clock = drivertest.NewClock(time.Unix(0, 0)) // a clock the chip does not see: the driver does not wait
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense without waiting: %v, want NACK", err)
	}
	d.s.Clock = c
	c.Advance(time.Second)
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
	bus.Attach(0x44, sht3xsim.NewSim(sim.NewWorld(1), 1))
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
	f.Add(slices.Concat(beef, beef))
	f.Add(drivertest.Words(0, 0))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		drivertest.InRange(t, "temperature °C", m.Temperature.Celsius(), -40, 125)
		drivertest.InRange(t, "humidity", m.Humidity, 0, 100*physic.PercentRH)
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := slices.Concat(beef, beef)
	for b.Loop() {
		if _, err := decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
