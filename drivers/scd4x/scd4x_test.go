package scd4x

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

func newClock() *clock { return &clock{t: time.Date(2024, 10, 7, 7, 30, 0, 0, time.UTC)} }

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
		{name: "top of the output range", raw: cat(word(40000), word(0x6667), word(0x5EB9)), co2: 40000, tempC: -45 + 175*26215.0/65535, rh: 100 * 24249.0 / 65535},
		{name: "CO2 above the output range", raw: cat(word(40001), word(0x6667), word(0x5EB9)), err: errRange},
		{name: "colder than the operating range", raw: cat(word(500), word(0x2000), word(0x5EB9)), err: errRange},
		{name: "hotter than the operating range", raw: cat(word(500), word(0xA000), word(0x5EB9)), err: errRange},
		{name: "bad CO2 CRC", raw: cat([]byte{0x01, 0xF4, 0x7B}, exampleMeasurement[3:]), err: sensirion.ErrCRC},
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
		{Addr: a, W: cat([]byte{0x24, 0x16}, word(asc))},
		{Addr: a, W: cat([]byte{0x24, 0x27}, word(altitude))},
		{Addr: a, W: []byte{0x21, 0xB1}},
	}
}

var (
	notReady = []i2ctest.IO{{Addr: a, W: []byte{0xE4, 0xB8}}, {Addr: a, R: word(0x8000)}}
	ready    = []i2ctest.IO{{Addr: a, W: []byte{0xE4, 0xB8}}, {Addr: a, R: word(0x8006)}}
	readMeas = []i2ctest.IO{{Addr: a, W: []byte{0xEC, 0x05}}, {Addr: a, R: exampleMeasurement}}
)

func TestPlayback(t *testing.T) {
	never := ops(notReady)
	for i := 0; i < int(readyTimeout/pollInterval); i++ {
		never = ops(never, notReady)
	}
	for _, tc := range []struct {
		name       string
		opts       Opts
		ops        []i2ctest.IO
		nack       int
		openErr    string
		senseErr   string
		openSleeps []time.Duration
		polls      int
	}{
		{name: "defaults, data ready at once", opts: DefaultOpts, ops: ops(openOps(1, 0), ready, readMeas), nack: -1,
			openSleeps: []time.Duration{stopWait, commandWait, commandWait, commandWait}},
		{name: "no self-calibration, 520 m, data ready after two polls", opts: Opts{Addr: a, Altitude: 520},
			ops: ops(openOps(0, 520), notReady, notReady, ready, readMeas), nack: -1, polls: 2},
		{name: "nothing at the address", opts: DefaultOpts, nack: 0, openErr: "scd4x: stop_periodic_measurement"},
		{name: "serial CRC wrong", opts: DefaultOpts,
			ops: ops(openOps(1, 0)[:2], []i2ctest.IO{{Addr: a, R: cat(exampleSerial[:8], []byte{0x00})}}), nack: -1, openErr: "not an SCD4x?"},
		{name: "setting refused", opts: DefaultOpts, ops: openOps(1, 0)[:3], nack: 3, openErr: "set_automatic_self_calibration_enabled"},
		{name: "altitude above the datasheet's range", opts: Opts{Addr: a, Altitude: 3001}, openErr: "altitude 3001 m"},
		{name: "data never ready", opts: DefaultOpts, ops: ops(openOps(1, 0), never), nack: -1, senseErr: "no new measurement within 6s"},
		{name: "read not acknowledged", opts: DefaultOpts, ops: ops(openOps(1, 0), ready, readMeas[:1]), nack: 9, senseErr: "read_measurement"},
		{name: "implausible CO2", opts: DefaultOpts,
			ops: ops(openOps(1, 0), ready, readMeas[:1], []i2ctest.IO{{Addr: a, R: cat(word(65535), exampleMeasurement[3:])}}), nack: -1,
			senseErr: "CO2 65535 ppm outside the datasheet range"},
		{name: "data-ready CRC wrong", opts: DefaultOpts, ops: ops(openOps(1, 0), []i2ctest.IO{ready[0], {Addr: a, R: []byte{0x80, 0x06, 0x00}}}), nack: -1,
			senseErr: "CRC mismatch"},
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
			o := tc.opts
			o.Sleep = c.sleep
			d, err := New(bus, &o)
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("New error %v, want %q", err, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Serial() != exampleSerialNumber {
				t.Errorf("serial %d, datasheet %d", d.Serial(), uint64(exampleSerialNumber))
			}
			if tc.openSleeps != nil && fmt.Sprint(c.sleeps) != fmt.Sprint(tc.openSleeps) {
				t.Errorf("New waited %v, datasheet execution times %v", c.sleeps, tc.openSleeps)
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
			polls := 0
			for _, s := range c.sleeps {
				if s == pollInterval {
					polls++
				}
			}
			if polls != tc.polls {
				t.Errorf("polled %d times (sleeps %v), want %d", polls, c.sleeps, tc.polls)
			}
			if m.CO2 != 500 {
				t.Errorf("CO2 %d", m.CO2)
			}
		})
	}
}

func TestHalt(t *testing.T) {
	pb := &i2ctest.Playback{Ops: ops(openOps(1, 0), []i2ctest.IO{{Addr: a, W: []byte{0x3F, 0x86}}}), DontPanic: true}
	c := newClock()
	o := DefaultOpts
	o.Sleep = c.sleep
	d, err := New(pb, &o)
	if err != nil {
		t.Fatal(err)
	}
	c.sleeps = nil
	if err := d.Halt(); err != nil {
		t.Fatal(err)
	}
	if len(c.sleeps) != 1 || c.sleeps[0] != stopWait {
		t.Errorf("Halt waited %v, want %v", c.sleeps, stopWait)
	}
	if err := pb.Close(); err != nil {
		t.Error(err)
	}
}

func newSimDev(t *testing.T, o Opts) (*clock, *Sim, *sim.Bus, *Dev) {
	t.Helper()
	c := newClock()
	chip := NewSim(sim.NewWorld(31), exampleSerialNumber)
	chip.chip.Now = c.now
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(a, chip)
	o.Sleep = c.sleep
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
	start := c.t
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
	if took := c.t.Sub(start); took < 30*updateInterval || took > 30*updateInterval+2*time.Second {
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
	o.Sleep = c.sleep
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
	fresh := NewSim(sim.NewWorld(2), 1)
	fresh.chip.Now = c.now
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
	c.t = c.t.Add(time.Second)
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
	f.Add(cat(word(65535), word(65535), word(65535)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decode(raw)
		if err != nil {
			return
		}
		if m.CO2 > maxCO2 {
			t.Fatalf("CO2 %d", m.CO2)
		}
		if c := m.Temperature.Celsius(); c < minTemp || c > maxTemp {
			t.Fatalf("temperature %v", c)
		}
		if m.Humidity < 0 || m.Humidity > 100*physic.PercentRH {
			t.Fatalf("humidity %v", m.Humidity)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for b.Loop() {
		if _, err := decode(exampleMeasurement); err != nil {
			b.Fatal(err)
		}
	}
}
