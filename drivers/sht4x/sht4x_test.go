package sht4x

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
	"github.com/cityedge/cityedge/drivers/sht4x/sht4xsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// Each chip's tests start at their own date and hour, so the chips' round trips see different street weather.
func newClock() *drivertest.Clock {
	return drivertest.NewClock(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
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
		{name: "datasheet CRC example words", raw: slices.Concat(beef, beef), tempC: -45 + 175*48879.0/65535, rh: -6 + 125*48879.0/65535},
		{name: "25 °C, 50 %RH", raw: drivertest.Words(26215, 29884), tempC: -45 + 175*26215.0/65535, rh: -6 + 125*29884.0/65535},
		{name: "humidity cropped at 0", raw: drivertest.Words(26215, 0), tempC: -45 + 175*26215.0/65535, rh: 0},
		{name: "humidity cropped at 100", raw: drivertest.Words(26215, 0xFFFF), tempC: -45 + 175*26215.0/65535, rh: 100},
		{name: "bad CRC", raw: slices.Concat(beef, []byte{0xBE, 0xEF, 0x91}), err: sensirion.ErrCRC},
		{name: "below -40 °C", raw: slices.Concat(drivertest.Words(100), beef), err: sensirion.ErrRange},
		{name: "above 125 °C", raw: slices.Concat(drivertest.Words(0xFFFF), beef), err: sensirion.ErrRange},
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

// Deliberately this chip's own table, not shared with its Sensirion siblings: its bytes and waits come from its own datasheet.
func TestPlayback(t *testing.T) {
	const a = 0x44
	open := []i2ctest.IO{{Addr: a, W: []byte{0x89}}, {Addr: a, R: drivertest.Words(0x0F3C, 0x5A21)}}
	sense := []i2ctest.IO{{Addr: a, W: []byte{0xFD}}, {Addr: a, R: slices.Concat(beef, beef)}}
	for _, tc := range []struct {
		name     string
		ops      []i2ctest.IO
		nack     int
		nacked   bool // the error the case ends on comes from the NACK
		openErr  string
		senseErr string
	}{
		{name: "SHT40", ops: slices.Concat(open, sense), nack: -1},
		{name: "nothing at the address", nacked: true, nack: 0, openErr: "sht4x: read serial number"},
		{name: "not an SHT4x: serial read not acknowledged", nacked: true, ops: open[:1], nack: 1, openErr: "sht4x: read serial number: command 0x89: read"},
		{name: "serial CRC wrong", ops: slices.Concat(open[:1], []i2ctest.IO{{Addr: a, R: slices.Concat(drivertest.Words(0x0F3C), []byte{0x5A, 0x21, 0x00})}}), nack: -1,
			openErr: "not an SHT4x?"},
		{name: "measurement not acknowledged", nacked: true, ops: slices.Concat(open, sense[:1]), nack: 3, senseErr: "sht4x: measure: command 0xfd: read"},
		{name: "measurement CRC wrong", ops: slices.Concat(open, sense[:1], []i2ctest.IO{{Addr: a, R: slices.Concat([]byte{0xBE, 0xEF, 0x00}, beef)}}), nack: -1,
			senseErr: "CRC mismatch"},
		{name: "implausible temperature", ops: slices.Concat(open, sense[:1], []i2ctest.IO{{Addr: a, R: slices.Concat(drivertest.Words(0xFFFF), beef)}}), nack: -1,
			senseErr: "outside the datasheet range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := drivertest.Playback(t, tc.ops, tc.nack)
			c := newClock()
			d, err := New(bus, &Opts{Addr: a, Clock: c})
			if drivertest.WantErr(t, "New", err, tc.openErr) {
				drivertest.WantNACK(t, "New", err, tc.nack, tc.nacked)
				return
			}
			if d.Serial() != 0x0F3C5A21 || d.String() != "SHT4x serial 0f3c5a21 on playback address 0x44" {
				t.Errorf("serial %08x, String %q", d.Serial(), d.String())
			}
			c.Sleeps = nil
			m, err := d.Sense(context.Background())
			if drivertest.WantErr(t, "Sense", err, tc.senseErr) {
				drivertest.WantNACK(t, "Sense", err, tc.nack, tc.nacked)
				return
			}
			if len(c.Sleeps) != 1 || c.Sleeps[0] < 8300*time.Microsecond {
				t.Errorf("waited %v, the datasheet's maximum is 8.3 ms", c.Sleeps)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-85.52) > 0.005 {
				t.Errorf("temperature %v", got)
			}
		})
	}
}

// newSimDev opens the driver at 0x44 on a simulated chip with serial, its
// world from seed, on a fake clock.
func newSimDev(t *testing.T, seed uint64, serial uint32) (*drivertest.Clock, *sht4xsim.Sim, *sim.Bus, *Dev) {
	t.Helper()
	c := newClock()
	chip := sht4xsim.NewSim(sim.NewWorld(seed), serial)
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
	c, chip, _, d := newSimDev(t, 21, 0x12345678)
	if d.Serial() != 0x12345678 {
		t.Fatalf("serial %08x", d.Serial())
	}
	for i := 0; i < 24; i++ {
		c.Advance(time.Hour)
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
	c, chip, bus, d := newSimDev(t, 1, 1)
	d.s.Clock = drivertest.NewClock(time.Unix(0, 0)) // a clock the chip does not see: the driver does not wait
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense without waiting: %v, want NACK", err)
	}
	d.s.Clock = c
	c.Advance(time.Second)
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
	bus.Attach(0x44, sht4xsim.NewSim(sim.NewWorld(1), 1))
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
	f.Add([]byte{0x01})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		drivertest.InRange(t, "temperature °C", m.Temperature.Celsius(), -40, 125)
		drivertest.InRange(t, "humidity (cropped)", m.Humidity, 0, 100*physic.PercentRH)
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
