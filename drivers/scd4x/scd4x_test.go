package scd4x

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
	"github.com/cityedge/cityedge/drivers/scd4x/scd4xsim"
	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// Each chip's tests start at their own date and hour, so the chips' round trips see different street weather.
func newClock() *drivertest.Clock {
	return drivertest.NewClock(time.Date(2024, 10, 7, 7, 30, 0, 0, time.UTC))
}

// Worked examples of the SCD4x datasheet: read_measurement returning
// 500 ppm, 25 °C, 37 %RH, and get_serial_number returning 273325796834238.
var (
	exampleMeasurement = []byte{0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C}
	exampleSerial      = []byte{0xF8, 0x96, 0x31, 0x9F, 0x07, 0xC2, 0x3B, 0xBE, 0x89}
)

const exampleSerialNumber = 273325796834238

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		raw       []byte
		co2       uint16
		tempC, rh float64
		err       error
	}{
		{name: "datasheet example", raw: exampleMeasurement, co2: 500, tempC: -45 + 175*26215.0/65535, rh: 100 * 24249.0 / 65535},
		{name: "top of the output range", raw: drivertest.Words(40000, 0x6667, 0x5EB9), co2: 40000, tempC: -45 + 175*26215.0/65535, rh: 100 * 24249.0 / 65535},
		{name: "CO2 above the output range", raw: drivertest.Words(40001, 0x6667, 0x5EB9), err: sensirion.ErrRange},
		{name: "colder than the operating range", raw: drivertest.Words(500, 0x2000, 0x5EB9), err: sensirion.ErrRange},
		{name: "hotter than the operating range", raw: drivertest.Words(500, 0xA000, 0x5EB9), err: sensirion.ErrRange},
		{name: "bad CO2 CRC", raw: slices.Concat([]byte{0x01, 0xF4, 0x7B}, exampleMeasurement[3:]), err: sensirion.ErrCRC},
		{name: "short", raw: exampleMeasurement[:6], err: errors.New("want 9")},
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
			if m.CO2 != tc.co2 {
				t.Errorf("CO2 %d, want %d", m.CO2, tc.co2)
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

const a = 0x62

// openOps is New's exchange with a sensor configured with asc and altitude.
func openOps(asc, altitude uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: a, W: []byte{0x3F, 0x86}},
		{Addr: a, W: []byte{0x36, 0x82}}, {Addr: a, R: exampleSerial},
		{Addr: a, W: slices.Concat([]byte{0x24, 0x16}, drivertest.Words(asc))},
		{Addr: a, W: slices.Concat([]byte{0x24, 0x27}, drivertest.Words(altitude))},
		{Addr: a, W: []byte{0x21, 0xB1}},
	}
}

var (
	notReady = []i2ctest.IO{{Addr: a, W: []byte{0xE4, 0xB8}}, {Addr: a, R: drivertest.Words(0x8000)}}
	ready    = []i2ctest.IO{{Addr: a, W: []byte{0xE4, 0xB8}}, {Addr: a, R: drivertest.Words(0x8006)}}
	readMeas = []i2ctest.IO{{Addr: a, W: []byte{0xEC, 0x05}}, {Addr: a, R: exampleMeasurement}}
)

func TestPlayback(t *testing.T) {
	never := slices.Concat(notReady)
	for i := 0; i < int(readyTimeout/pollInterval); i++ {
		never = slices.Concat(never, notReady)
	}
	for _, tc := range []struct {
		name       string
		opts       Opts
		ops        []i2ctest.IO
		nack       int
		nacked     bool // the error the case ends on comes from the NACK
		openErr    string
		senseErr   string
		openSleeps []time.Duration
		polls      int
	}{
		{name: "defaults, data ready at once", opts: DefaultOpts, ops: slices.Concat(openOps(1, 0), ready, readMeas), nack: -1,
			openSleeps: []time.Duration{stopWait, commandWait, commandWait, commandWait}},
		{name: "no self-calibration, 520 m, data ready after two polls", opts: Opts{Addr: a, Altitude: 520},
			ops: slices.Concat(openOps(0, 520), notReady, notReady, ready, readMeas), nack: -1, polls: 2},
		{name: "nothing at the address", nacked: true, opts: DefaultOpts, nack: 0, openErr: "scd4x: stop_periodic_measurement"},
		{name: "serial CRC wrong", opts: DefaultOpts,
			ops: slices.Concat(openOps(1, 0)[:2], []i2ctest.IO{{Addr: a, R: slices.Concat(exampleSerial[:8], []byte{0x00})}}), nack: -1, openErr: "not an SCD4x?"},
		{name: "setting refused", nacked: true, opts: DefaultOpts, ops: openOps(1, 0)[:3], nack: 3, openErr: "set_automatic_self_calibration_enabled"},
		{name: "altitude above the datasheet's range", opts: Opts{Addr: a, Altitude: 3001}, nack: -1, openErr: "altitude 3001 m"},
		{name: "data never ready", opts: DefaultOpts, ops: slices.Concat(openOps(1, 0), never), nack: -1, senseErr: "no new measurement within 6s"},
		{name: "read not acknowledged", nacked: true, opts: DefaultOpts, ops: slices.Concat(openOps(1, 0), ready, readMeas[:1]), nack: 9, senseErr: "read_measurement"},
		{name: "implausible CO2", opts: DefaultOpts,
			ops: slices.Concat(openOps(1, 0), ready, readMeas[:1], []i2ctest.IO{{Addr: a, R: slices.Concat(drivertest.Words(65535), exampleMeasurement[3:])}}), nack: -1,
			senseErr: "CO2 65535 ppm outside the datasheet range"},
		{name: "data-ready CRC wrong", opts: DefaultOpts, ops: slices.Concat(openOps(1, 0), []i2ctest.IO{ready[0], {Addr: a, R: []byte{0x80, 0x06, 0x00}}}), nack: -1,
			senseErr: "CRC mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := drivertest.Playback(t, tc.ops, tc.nack)
			c := newClock()
			o := tc.opts
			o.Clock = c
			d, err := New(bus, &o)
			if drivertest.WantErr(t, "New", err, tc.openErr) {
				drivertest.WantNACK(t, "New", err, tc.nack, tc.nacked)
				return
			}
			if d.Serial() != exampleSerialNumber {
				t.Errorf("serial %d, datasheet %d", d.Serial(), uint64(exampleSerialNumber))
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
			polls := 0
			for _, s := range c.Sleeps {
				if s == pollInterval {
					polls++
				}
			}
			if polls != tc.polls {
				t.Errorf("polled %d times (sleeps %v), want %d", polls, c.Sleeps, tc.polls)
			}
			if m.CO2 != 500 {
				t.Errorf("CO2 %d", m.CO2)
			}
		})
	}
}

func TestHalt(t *testing.T) {
	bus := drivertest.Playback(t, slices.Concat(openOps(1, 0), []i2ctest.IO{{Addr: a, W: []byte{0x3F, 0x86}}}), -1)
	c := newClock()
	o := DefaultOpts
	o.Clock = c
	d, err := New(bus, &o)
	if err != nil {
		t.Fatal(err)
	}
	c.Sleeps = nil
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if len(c.Sleeps) != 1 || c.Sleeps[0] != stopWait {
		t.Errorf("Halt waited %v, want %v", c.Sleeps, stopWait)
	}
}

func newSimDev(t *testing.T, o Opts) (*drivertest.Clock, *scd4xsim.Sim, *sim.Bus, *Dev) {
	t.Helper()
	c := newClock()
	chip := scd4xsim.NewSim(sim.NewWorld(31), exampleSerialNumber)
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(a, chip)
	o.Clock = c
	d, err := New(bus, &o)
	if err != nil {
		t.Fatal(err)
	}
	return c, chip, bus, d
}

func TestSimRoundTrip(t *testing.T) {
	c, chip, _, d := newSimDev(t, Opts{Addr: a, SelfCalibration: false, Altitude: 120})
	if asc, alt := chip.Settings(); asc || alt != 120 || !chip.Periodic() {
		t.Fatalf("sim holds ASC %v, altitude %d, periodic %v", asc, alt, chip.Periodic())
	}
	start := c.Now()
	for i := 0; i < 30; i++ {
		m, err := d.Sense(context.Background())
		if err != nil {
			t.Fatalf("reading %d: %v", i, err)
		}
		wx := chip.Measured()
		if math.Abs(float64(m.CO2)-wx.CO2) > 0.5 {
			t.Errorf("reading %d: CO2 %d, world %.2f", i, m.CO2, wx.CO2)
		}
		if got := m.Temperature.Celsius(); math.Abs(got-wx.TempC) > 0.0014 {
			t.Errorf("reading %d: temperature %.4f, world %.4f", i, got, wx.TempC)
		}
		if got := float64(m.Humidity) / float64(physic.PercentRH); math.Abs(got-wx.RH) > 0.0008 {
			t.Errorf("reading %d: humidity %.4f, world %.4f", i, got, wx.RH)
		}
	}
	// One new measurement per 5 s update interval: 30 readings take about
	// 150 s of (simulated) time, never less.
	if took := c.Now().Sub(start); took < 30*updateInterval || took > 30*updateInterval+2*time.Second {
		t.Errorf("30 readings took %v", took)
	}
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if chip.Periodic() {
		t.Error("sensor still measuring after Halt")
	}
}

func TestSimRestartAndReplug(t *testing.T) {
	c, chip, bus, d := newSimDev(t, DefaultOpts)
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The agent restarts without Halt: the sensor is still measuring, and
	// a new Dev must stop it before it takes settings.
	o := DefaultOpts
	o.Clock = c
	d2, err := New(bus, &o)
	if err != nil {
		t.Fatalf("New on a measuring sensor: %v", err)
	}
	if _, err := d2.Sense(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Unplugged: readings fail; back: the sampler re-opens.
	bus.Detach(a)
	if _, err := d2.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense with the sensor gone: %v", err)
	}
	fresh := scd4xsim.NewSim(sim.NewWorld(2), 1)
	fresh.SetClock(c)
	bus.Attach(a, fresh)
	d3, err := New(bus, &o)
	if err != nil {
		t.Fatalf("re-open after re-plug: %v", err)
	}
	if _, err := d3.Sense(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The unplugged sim was left measuring; like the sensor, it refuses
	// other commands then.
	if !chip.Periodic() {
		t.Fatal("the first sensor is not measuring")
	}
	c.Advance(time.Second)
	if err := chip.Tx([]byte{0x36, 0x82}, nil); !errors.Is(err, sim.ErrNACK) {
		t.Errorf("get_serial_number during periodic measurement: %v, want NACK", err)
	}
}

func TestSenseHonoursContext(t *testing.T) {
	_, _, _, d := newSimDev(t, DefaultOpts)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sense with a cancelled context: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(exampleMeasurement)
	f.Add(exampleSerial)
	f.Add(drivertest.Words(65535, 65535, 65535))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		drivertest.InRange(t, "CO2 ppm", m.CO2, 0, maxCO2)
		drivertest.InRange(t, "temperature °C", m.Temperature.Celsius(), minTemp, maxTemp)
		drivertest.InRange(t, "humidity", m.Humidity, 0, 100*physic.PercentRH)
	})
}

func BenchmarkDecode(b *testing.B) {
	for b.Loop() {
		if _, err := decode(exampleMeasurement); err != nil {
			b.Fatal(err)
		}
	}
}
