package sps30

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/cityedge/cityedge/drivers/sps30/sps30sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

// Each chip's tests start at their own date and hour, so the chips' round trips see different street weather.
func newClock() *drivertest.Clock {
	return drivertest.NewClock(time.Date(2024, 11, 20, 17, 45, 0, 0, time.UTC))
}

// floats encodes values the way the sensor sends them: each float32 big
// endian as two words with CRC.
func floats(v ...float32) []byte {
	var w []uint16
	for _, f := range v {
		b := math.Float32bits(f)
		w = append(w, uint16(b>>16), uint16(b))
	}
	return drivertest.Words(w...)
}

// asciiBytes is str as the chip sends a string of n words, zero-padded.
func asciiBytes(str string, n int) []byte {
	b := make([]byte, 2*n)
	copy(b, str)
	w := make([]uint16, n)
	for i := range w {
		w[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return drivertest.Words(w...)
}

const a = 0x69

// The datasheet's start measurement example in float format: 0x00 0x10, then
// the argument 0x03 0x00 with its CRC 0xAC.
var startFloat = []byte{0x00, 0x10, 0x03, 0x00, 0xAC}

// A measurement of a moderately polluted street: mass PM1/2.5/4/10, number
// PM0.5..10, typical size.
var street = floats(11.5, 16.25, 18.5, 22.75, 75, 87, 88, 88.5, 89, 0.55)

func openOps(interval uint32, write bool) []i2ctest.IO {
	o := []i2ctest.IO{
		{Addr: a, W: []byte{0xD3, 0x04}},
		{Addr: a, W: []byte{0xD0, 0x02}}, {Addr: a, R: asciiBytes("00080000", 4)},
		{Addr: a, W: []byte{0xD0, 0x33}}, {Addr: a, R: asciiBytes("3E1B6A2F8C0D4411", 16)},
		{Addr: a, W: []byte{0x80, 0x04}}, {Addr: a, R: drivertest.Words(uint16(interval>>16), uint16(interval))},
	}
	if write {
		// Four days: 345600 s = 0x00054600.
		o = append(o, i2ctest.IO{Addr: a, W: slices.Concat([]byte{0x80, 0x04}, drivertest.Words(0x0005, 0x4600))})
	}
	return append(o, i2ctest.IO{Addr: a, W: startFloat})
}

var (
	notReady = []i2ctest.IO{{Addr: a, W: []byte{0x02, 0x02}}, {Addr: a, R: drivertest.Words(0)}}
	ready    = []i2ctest.IO{{Addr: a, W: []byte{0x02, 0x02}}, {Addr: a, R: drivertest.Words(1)}}
	readVals = []i2ctest.IO{{Addr: a, W: []byte{0x03, 0x00}}, {Addr: a, R: street}}
)

func TestDecode(t *testing.T) {
	bad := append([]byte(nil), street...)
	bad[5] ^= 0xFF
	for _, tc := range []struct {
		name string
		raw  []byte
		want Measurement
		err  error
	}{
		{name: "street", raw: street, want: Measurement{11.5, 16.25, 18.5, 22.75, 75, 87, 88, 88.5, 89, 0.55}},
		{name: "clean air", raw: floats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0), want: Measurement{}},
		{name: "top of the range", raw: floats(600, 900, 950, 1000, 3000, 3000, 3000, 3000, 3000, 2), want: Measurement{600, 900, 950, 1000, 3000, 3000, 3000, 3000, 3000, 2}},
		{name: "PM10 above 1000 µg/m³", raw: floats(600, 900, 950, 1000.5, 1, 1, 1, 1, 1, 1), err: sensirion.ErrRange},
		{name: "negative", raw: floats(-1, 0, 0, 0, 0, 0, 0, 0, 0, 0), err: sensirion.ErrRange},
		{name: "NaN", raw: floats(float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0, 0, 0), err: sensirion.ErrRange},
		{name: "bad CRC", raw: bad, err: sensirion.ErrCRC},
		{name: "short", raw: street[:30], err: errors.New("want 60")},
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
			if m != tc.want {
				t.Errorf("decode = %+v, want %+v", m, tc.want)
			}
		})
	}
}

func TestPlayback(t *testing.T) {
	never := slices.Concat(notReady)
	for i := 0; i < int(readyTimeout/pollInterval); i++ {
		never = slices.Concat(never, notReady)
	}
	for _, tc := range []struct {
		name       string
		interval   time.Duration
		ops        []i2ctest.IO
		nack       int
		nacked     bool // the error the case ends on comes from the NACK
		openErr    string
		senseErr   string
		openSleeps []time.Duration
		polls      int
	}{
		{name: "factory interval kept, data ready at once", interval: DefaultCleaningInterval, ops: slices.Concat(openOps(604800, false), ready, readVals), nack: -1,
			openSleeps: []time.Duration{resetWait, intervalRead, startStopWait}},
		{name: "interval written when it differs, two polls", interval: 96 * time.Hour, ops: slices.Concat(openOps(604800, true), notReady, notReady, ready, readVals),
			nack: -1, polls: 2, openSleeps: []time.Duration{resetWait, intervalRead, intervalWrite, startStopWait}},
		{name: "nothing at the address", nacked: true, interval: DefaultCleaningInterval, nack: 0, openErr: "sps30: device reset"},
		{name: "another Sensirion product", interval: DefaultCleaningInterval,
			ops: slices.Concat(openOps(0, false)[:2], []i2ctest.IO{{Addr: a, R: asciiBytes("00090000", 4)}}), nack: -1,
			openErr: `product type "00090000" is not an SPS30 ("00080000")`},
		{name: "product type garbled", interval: DefaultCleaningInterval,
			ops: slices.Concat(openOps(0, false)[:2], []i2ctest.IO{{Addr: a, R: []byte{0x30, 0x30, 0x00, 0x30, 0x38, 0, 0x30, 0x30, 0, 0x30, 0x30, 0}}}), nack: -1,
			openErr: "not an SPS30?"},
		{name: "interval in fractions of a second", interval: 1500 * time.Millisecond, nack: -1, openErr: "whole seconds"},
		{name: "start refused", nacked: true, interval: DefaultCleaningInterval, ops: openOps(604800, false)[:7], nack: 7, openErr: "sps30: start measurement"},
		{name: "data never ready", interval: DefaultCleaningInterval, ops: slices.Concat(openOps(604800, false), never), nack: -1,
			senseErr: "no new measurement within 3s"},
		{name: "values not acknowledged", nacked: true, interval: DefaultCleaningInterval, ops: slices.Concat(openOps(604800, false), ready, readVals[:1]), nack: 11,
			senseErr: "read measured values"},
		{name: "implausible PM10", interval: DefaultCleaningInterval,
			ops: slices.Concat(openOps(604800, false), ready, readVals[:1], []i2ctest.IO{{Addr: a, R: floats(1, 2, 3, 5000, 0, 0, 0, 0, 0, 0)}}), nack: -1,
			senseErr: "PM10 mass concentration 5000.0 µg/m³ outside the datasheet range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := drivertest.Playback(t, tc.ops, tc.nack)
			c := newClock()
			d, err := New(bus, &Opts{Addr: a, CleaningInterval: tc.interval, Clock: c})
			if drivertest.WantErr(t, "New", err, tc.openErr) {
				drivertest.WantNACK(t, "New", err, tc.nack, tc.nacked)
				return
			}
			if d.Serial() != "3E1B6A2F8C0D4411" || d.String() != "SPS30 serial 3E1B6A2F8C0D4411 on playback address 0x69" {
				t.Errorf("serial %q, String %q", d.Serial(), d.String())
			}
			if tc.openSleeps != nil && fmt.Sprint(c.Sleeps) != fmt.Sprint(tc.openSleeps) {
				t.Errorf("New waited %v, datasheet execution times %v", c.Sleeps, tc.openSleeps)
			}
			c.Sleeps = nil
			m, err := d.Sense(context.Background())
			if drivertest.WantErr(t, "Sense", err, tc.senseErr) {
				drivertest.WantNACK(t, "Sense", err, tc.nack, tc.nacked)
				return
			}
			if len(c.Sleeps) != tc.polls {
				t.Errorf("polled %v, want %d waits", c.Sleeps, tc.polls)
			}
			if m.MassPM2_5 != 16.25 || m.MassPM10 != 22.75 {
				t.Errorf("measurement %+v", m)
			}
		})
	}
}

func TestHalt(t *testing.T) {
	bus := drivertest.Playback(t, slices.Concat(openOps(604800, false), []i2ctest.IO{{Addr: a, W: []byte{0x01, 0x04}}}), -1)
	c := newClock()
	d, err := New(bus, &Opts{Addr: a, CleaningInterval: DefaultCleaningInterval, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	c.Sleeps = nil
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if len(c.Sleeps) != 1 || c.Sleeps[0] != startStopWait {
		t.Errorf("Halt waited %v, want %v", c.Sleeps, startStopWait)
	}
}

func newSimDev(t *testing.T, interval time.Duration) (*drivertest.Clock, *sps30sim.Sim, *sim.Bus, *Dev) {
	t.Helper()
	c := newClock()
	chip := sps30sim.NewSim(sim.NewWorld(41), "SIM0000000000042")
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(a, chip)
	d, err := New(bus, &Opts{Addr: a, CleaningInterval: interval, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return c, chip, bus, d
}

func TestSimRoundTrip(t *testing.T) {
	c, chip, _, d := newSimDev(t, DefaultCleaningInterval)
	if !chip.Measuring() {
		t.Fatal("not measuring after New")
	}
	start := c.Now()
	for i := 0; i < 20; i++ {
		m, err := d.Sense(context.Background())
		if err != nil {
			t.Fatalf("reading %d: %v", i, err)
		}
		wx := chip.Measured()
		for j, got := range []float32{m.MassPM1, m.MassPM2_5, m.MassPM4, m.MassPM10} {
			// float32 carries about 7 significant digits.
			if math.Abs(float64(got)-wx.PM[j]) > 1e-5*wx.PM[j]+1e-6 {
				t.Errorf("reading %d: mass %d = %v, world %v", i, j, got, wx.PM[j])
			}
		}
	}
	if took := c.Now().Sub(start); took < 19*measureInterval || took > 21*measureInterval {
		t.Errorf("20 readings took %v at one measurement per second", took)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if chip.Measuring() {
		t.Error("still measuring after Halt")
	}
}

func TestSimCleaningInterval(t *testing.T) {
	c, chip, bus, _ := newSimDev(t, DefaultCleaningInterval)
	if iv, writes := chip.CleaningInterval(); iv != DefaultCleaningInterval || writes != 0 {
		t.Fatalf("interval %v after %d writes; the factory value needs none", iv, writes)
	}
	// A new interval is written once; opening again (agent restart, sensor
	// left measuring) finds it in place and spares the flash.
	for i := 0; i < 3; i++ {
		if _, err := New(bus, &Opts{Addr: a, CleaningInterval: 72 * time.Hour, Clock: c}); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	if iv, writes := chip.CleaningInterval(); iv != 72*time.Hour || writes != 1 {
		t.Errorf("interval %v after %d writes, want 72h after 1", iv, writes)
	}
	if _, err := New(bus, &Opts{Addr: a, CleaningInterval: 0, Clock: c}); err != nil {
		t.Fatal(err)
	}
	if iv, _ := chip.CleaningInterval(); iv != 0 {
		t.Errorf("interval %v, want 0 (automatic cleaning off)", iv)
	}
}

func TestSimFaults(t *testing.T) {
	c, chip, bus, d := newSimDev(t, DefaultCleaningInterval)
	bus.Fail(a, sim.ErrNACK)
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense on a silent sensor: %v", err)
	}
	bus.Fail(a, nil)
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatalf("Sense after recovery: %v", err)
	}
	// Stopped behind the driver's back (power cycle): no data ever comes,
	// the reading fails instead of repeating an old one.
	if err := chip.Tx([]byte{0x01, 0x04}, nil); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if _, err := d.Sense(context.Background()); !errors.Is(err, sensirion.ErrNotReady) {
		t.Fatalf("Sense with measurement stopped: %v, want %v", err, sensirion.ErrNotReady)
	}
	// The uint16 output format is not what the driver uses; the sim refuses it.
	if err := chip.Tx([]byte{0x00, 0x10, 0x05, 0x00, 0xF6}, nil); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("start in uint16 format: %v, want NACK", err)
	}
}

func TestSenseHonoursContext(t *testing.T) {
	_, _, _, d := newSimDev(t, DefaultCleaningInterval)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sense with a cancelled context: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(street)
	f.Add(floats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(make([]byte, 60))
	f.Add([]byte{0x00, 0x10, 0x03, 0x00, 0xAC})
	f.Add(asciiBytes("00080000", 4))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		for _, v := range []float32{m.MassPM1, m.MassPM2_5, m.MassPM4, m.MassPM10} {
			drivertest.InRange(t, "mass µg/m³", v, 0, MaxMass)
		}
	})
}

func FuzzDecodeString(f *testing.F) {
	f.Add(asciiBytes("00080000", 4))
	f.Add(asciiBytes("3E1B6A2F8C0D4411", 16))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := decodeString(raw)
		if err != nil {
			return
		}
		if strings.ContainsRune(s, 0) || len(s) > 2*len(raw)/3 {
			t.Fatalf("decodeString = %q", s)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for b.Loop() {
		if _, err := decode(street); err != nil {
			b.Fatal(err)
		}
	}
}
