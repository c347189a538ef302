package bme280

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/bme280/bme280sim"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

// The worked example of the BMP280 datasheet (BST-BMP280-DS001 section 3.12),
// whose temperature and pressure calibration and formulas the BME280 shares.
const (
	exampleAdcT    = 519888
	exampleAdcP    = 415148
	exampleTFine   = 128422
	exampleTempC   = 25.08
	examplePressPa = 100653.27
)

// exampleRaw is the data burst 0xF7.. holding the example's ADC values
// (humidity appended for the BME280 cases).
func exampleRaw(adcH int) []byte {
	return []byte{
		exampleAdcP >> 12, exampleAdcP >> 4 & 0xFF, exampleAdcP << 4 & 0xF0,
		exampleAdcT >> 12, exampleAdcT >> 4 & 0xFF, exampleAdcT << 4 & 0xF0,
		byte(adcH >> 8), byte(adcH),
	}
}

// newClock is the fake time shared by the driver's sleep and the simulated
// chip, so tests never sleep and the chip sees exactly the waits the driver
// makes.
func newClock() *drivertest.Clock {
	return drivertest.NewClock(time.Date(2024, 6, 1, 14, 0, 0, 0, time.UTC))
}

func opts(c *drivertest.Clock) *Opts {
	o := DefaultOpts
	o.Clock = c
	return &o
}

// The simulated chip's trimming registers, also the playback scripts'.
var simCalib1, simCalib2 = bme280sim.Trimming()

// openOps is what New sends to a chip that answers with id.
func openOps(addr uint16, id byte) []i2ctest.IO {
	ops := []i2ctest.IO{
		{Addr: addr, W: []byte{regID}, R: []byte{id}},
		{Addr: addr, W: []byte{regReset, resetWord}},
		{Addr: addr, W: []byte{regStatus}, R: []byte{0x00}},
		{Addr: addr, W: []byte{regCalib1}, R: simCalib1},
	}
	if id == idBME280 {
		ops = append(ops, i2ctest.IO{Addr: addr, W: []byte{regCalib2}, R: simCalib2})
	}
	return ops
}

// floatHumidity is the double-precision humidity formula of BME280 datasheet
// section 8.1, an independent reference for the integer one.
func floatHumidity(c *calibration, adcH int32, tFine float64) float64 {
	v := tFine - 76800
	v = (float64(adcH) - (float64(c.h4)*64 + float64(c.h5)/16384*v)) *
		(float64(c.h2) / 65536 * (1 + float64(c.h6)/67108864*v*(1+float64(c.h3)/67108864*v)))
	v *= 1 - float64(c.h1)*v/524288
	return math.Max(0, math.Min(100, v))
}

func TestDecodeDatasheetExample(t *testing.T) {
	bme, err := parseCalibration(simCalib1, simCalib2)
	if err != nil {
		t.Fatal(err)
	}
	bme.pressure, bme.humidity = true, true
	bmp, err := parseCalibration(simCalib1, nil)
	if err != nil {
		t.Fatal(err)
	}
	bmp.pressure = true

	centi, tFine := bme.compensateT(exampleAdcT)
	if centi != 2508 || tFine != exampleTFine {
		t.Fatalf("compensateT(%d) = %d, t_fine %d; datasheet: 2508, t_fine %d", exampleAdcT, centi, tFine, exampleTFine)
	}

	for _, tc := range []struct {
		name string
		cal  *calibration
		raw  []byte
		adcH int32
	}{
		{"BMP280", &bmp, exampleRaw(0)[:6], -1},
		{"BME280 dry", &bme, exampleRaw(20000), 20000},
		{"BME280 mid", &bme, exampleRaw(28000), 28000},
		{"BME280 humid", &bme, exampleRaw(36000), 36000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode(tc.cal, tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-exampleTempC) > 0.005 {
				t.Errorf("temperature %v °C, datasheet %v", got, exampleTempC)
			}
			// Q24.8 is 1/256 Pa; the integer and double formulas differ
			// by a few of those.
			if got := float64(m.Pressure) / float64(physic.Pascal); !m.HasPressure || math.Abs(got-examplePressPa) > 0.05 {
				t.Errorf("pressure %v Pa (has %v), datasheet %v", got, m.HasPressure, examplePressPa)
			}
			if tc.adcH < 0 {
				if m.HasHumidity {
					t.Errorf("BMP280 reported humidity %v", m.Humidity)
				}
				return
			}
			want := floatHumidity(tc.cal, tc.adcH, exampleTFine)
			got := float64(m.Humidity) / float64(physic.PercentRH)
			if !m.HasHumidity || math.Abs(got-want) > 0.01 {
				t.Errorf("humidity %v %%RH, double formula %v", got, want)
			}
		})
	}
}

func TestDecodeFaults(t *testing.T) {
	bme, _ := parseCalibration(simCalib1, simCalib2)
	bme.pressure, bme.humidity = true, true
	bmp, _ := parseCalibration(simCalib1, nil)
	bmp.pressure = true
	hot := exampleRaw(30000)
	hot[3] = 0xFF // adc_T near full scale: about 150 °C with this calibration
	lowP := exampleRaw(30000)
	lowP[0], lowP[1] = 0xFF, 0xFF // adc_P near full scale: far below 300 hPa
	for _, tc := range []struct {
		name string
		cal  *calibration
		raw  []byte
		want error
	}{
		{"reset values", &bme, []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}, errNoData},
		{"reset values BMP280", &bmp, []byte{0x80, 0, 0, 0x80, 0, 0}, nil}, // see below
		{"temperature out of range", &bme, hot, errRange},
		{"pressure out of range", &bme, lowP, errRange},
		{"short burst", &bme, exampleRaw(0)[:5], errRawSize},
		{"humidity without calibration", &bmp, exampleRaw(0), errRawSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(tc.cal, tc.raw)
			if tc.want == nil {
				// A BMP280 burst has no humidity bytes, so temperature and
				// pressure at reset value are what identifies "no data".
				tc.want = errNoData
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("decode error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseCalibrationRejectsDeadChip(t *testing.T) {
	ff := make([]byte, calib1Len)
	for i := range ff {
		ff[i] = 0xFF
	}
	zeroT1 := append([]byte(nil), simCalib1...)
	zeroT1[0], zeroT1[1] = 0, 0
	for name, c1 := range map[string][]byte{"all 0xFF": ff, "all zero": make([]byte, calib1Len), "dig_T1 zero": zeroT1} {
		if _, err := parseCalibration(c1, simCalib2); !errors.Is(err, errCalib) {
			t.Errorf("%s: error %v, want %v", name, err, errCalib)
		}
	}
}

func TestMeasureTime(t *testing.T) {
	// Section 9.1, t_measure,max.
	for _, tc := range []struct {
		t, p, h Oversampling
		want    time.Duration
	}{
		{X1, X1, X1, 9300 * time.Microsecond},      // 1.25+2.3+2.875+2.875
		{X1, Off, Off, 3550 * time.Microsecond},    // temperature only
		{X1, X1, Off, 6425 * time.Microsecond},     // BMP280 ultra low power
		{X16, X16, X16, 112800 * time.Microsecond}, // the slowest setting
		{X2, X16, X1, 46100 * time.Microsecond},    // 1.25+4.6+37.375+2.875
	} {
		if got := MeasureTime(tc.t, tc.p, tc.h); got != tc.want {
			t.Errorf("MeasureTime(%d, %d, %d) = %v, want %v", tc.t.Factor(), tc.p.Factor(), tc.h.Factor(), got, tc.want)
		}
	}
}

func TestPlayback(t *testing.T) {
	bmeOpen := openOps(0x76, idBME280)
	bmeSense := []i2ctest.IO{
		{Addr: 0x76, W: []byte{regCtrlHum, 0x01, regCtrlMeas, 0x25}},
		{Addr: 0x76, W: []byte{regData}, R: exampleRaw(28000)},
	}
	bmpOpen := openOps(0x77, idBMP280)
	bmpSense := []i2ctest.IO{
		{Addr: 0x77, W: []byte{regCtrlMeas, 0x25}},
		{Addr: 0x77, W: []byte{regData}, R: exampleRaw(0)[:6]},
	}
	hot := exampleRaw(28000)
	hot[3] = 0xFF
	badCRCish := append([]byte(nil), simCalib1...) // NVM reading back as zeros
	for i := range badCRCish {
		badCRCish[i] = 0
	}
	nvmBusy := []i2ctest.IO{
		{Addr: 0x76, W: []byte{regID}, R: []byte{idBME280}},
		{Addr: 0x76, W: []byte{regReset, resetWord}},
		{Addr: 0x76, W: []byte{regStatus}, R: []byte{statusNVM}},
		{Addr: 0x76, W: []byte{regStatus}, R: []byte{0x00}},
		{Addr: 0x76, W: []byte{regCalib1}, R: simCalib1},
		{Addr: 0x76, W: []byte{regCalib2}, R: simCalib2},
	}

	for _, tc := range []struct {
		name     string
		addr     uint16
		ops      []i2ctest.IO
		nack     int  // transaction to NACK, -1 for none
		nacked   bool // the error the case ends on comes from the NACK
		sense    bool
		chip     Chip
		openErr  string
		senseErr string
		humidity bool
	}{
		{name: "BME280", addr: 0x76, ops: slices.Concat(bmeOpen, bmeSense), nack: -1, sense: true, chip: BME280, humidity: true},
		{name: "BMP280 at 0x77", addr: 0x77, ops: slices.Concat(bmpOpen, bmpSense), nack: -1, sense: true, chip: BMP280},
		{name: "NVM copy still running after reset", addr: 0x76, ops: slices.Concat(nvmBusy, bmeSense), nack: -1, sense: true, chip: BME280, humidity: true},
		{name: "wrong chip id", addr: 0x76, ops: []i2ctest.IO{{Addr: 0x76, W: []byte{regID}, R: []byte{0x55}}}, nack: -1,
			openErr: "chip id 0x55 is neither a BME280 (0x60) nor a BMP280 (0x58)"},
		{name: "nothing at address", nacked: true, addr: 0x76, nack: 0, openErr: "read chip id"},
		{name: "NACK on calibration", nacked: true, addr: 0x76, ops: bmeOpen[:3], nack: 3, openErr: "read calibration 0x88..0xA1"},
		{name: "dead calibration NVM", addr: 0x76, ops: slices.Concat(bmeOpen[:3], []i2ctest.IO{{Addr: 0x76, W: []byte{regCalib1}, R: badCRCish}, bmeOpen[4]}),
			nack: -1, openErr: "calibration data invalid"},
		{name: "NACK on data read", nacked: true, addr: 0x76, ops: slices.Concat(bmeOpen, bmeSense[:1]), nack: len(bmeOpen) + 1, sense: true, chip: BME280,
			senseErr: "bme280: read data"},
		{name: "chip reset during conversion", addr: 0x76, ops: slices.Concat(bmeOpen, bmeSense[:1], []i2ctest.IO{{Addr: 0x76, W: []byte{regData}, R: []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}}}),
			nack: -1, sense: true, chip: BME280, senseErr: "no measurement"},
		{name: "implausible temperature", addr: 0x76, ops: slices.Concat(bmeOpen, bmeSense[:1], []i2ctest.IO{{Addr: 0x76, W: []byte{regData}, R: hot}}),
			nack: -1, sense: true, chip: BME280, senseErr: "outside the datasheet operating range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			o := opts(c)
			o.Addr = tc.addr
			d, err := New(drivertest.Playback(t, tc.ops, tc.nack), o)
			if drivertest.WantErr(t, "New", err, tc.openErr) {
				drivertest.WantNACK(t, "New", err, tc.nack, tc.nacked)
				return
			}
			if d.Chip() != tc.chip {
				t.Fatalf("chip %v, want %v", d.Chip(), tc.chip)
			}
			if c.Sleeps[0] != tStartupMax {
				t.Errorf("waited %v after reset, datasheet start-up time is %v", c.Sleeps[0], tStartupMax)
			}
			if !tc.sense {
				return
			}
			c.Sleeps = nil
			m, err := d.Sense(context.Background())
			if drivertest.WantErr(t, "Sense", err, tc.senseErr) {
				drivertest.WantNACK(t, "Sense", err, tc.nack, tc.nacked)
				return
			}
			wantWait := MeasureTime(X1, X1, X1)
			if tc.chip == BMP280 {
				wantWait = MeasureTime(X1, X1, Off)
			}
			if len(c.Sleeps) != 1 || c.Sleeps[0] != wantWait {
				t.Errorf("waits %v, want one of %v (section 9.1)", c.Sleeps, wantWait)
			}
			if got := m.Temperature.Celsius(); math.Abs(got-exampleTempC) > 0.005 {
				t.Errorf("temperature %v, want %v", got, exampleTempC)
			}
			if m.HasHumidity != tc.humidity {
				t.Errorf("HasHumidity %v, want %v", m.HasHumidity, tc.humidity)
			}
		})
	}
}

func TestNewRejectsBadOpts(t *testing.T) {
	for _, o := range []Opts{
		{Addr: 0x76, Temperature: Off, Pressure: X1},
		{Addr: 0x76, Temperature: X1, Pressure: 9},
	} {
		pb := &i2ctest.Playback{DontPanic: true}
		if _, err := New(pb, &o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		id   byte
		want string
	}{{idBME280, "BME280 on playback address 0x76"}, {0x56, "BMP280 (no humidity) on playback address 0x76"}} {
		ops := openOps(0x76, tc.id)
		if tc.id != idBME280 {
			ops = ops[:4]
		}
		ops[0].R = []byte{tc.id}
		d, err := New(drivertest.Playback(t, ops, -1), opts(newClock()))
		if err != nil {
			t.Fatal(err)
		}
		if got := d.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// newSimDev opens the driver with o at 0x76 on a simulated chip of the given
// kind, its world from seed, on a fake clock.
func newSimDev(tb testing.TB, seed uint64, kind Chip, o Opts) (*drivertest.Clock, *bme280sim.Sim, *sim.Bus, *Dev) {
	tb.Helper()
	c := newClock()
	chip := bme280sim.NewSim(sim.NewWorld(seed), bme280sim.Chip(kind))
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x76, chip)
	o.Clock = c
	d, err := New(bus, &o)
	if err != nil {
		tb.Fatal(err)
	}
	return c, chip, bus, d
}

// TestSimRoundTrip runs the driver against the simulated chip over the
// simulated bus and checks that what it decodes is the weather the chip was
// given, within the quantisation of the ADCs and the integer formulas.
func TestSimRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		chip    Chip
		t, p, h Oversampling
	}{
		{BME280, X1, X1, X1},
		{BME280, X16, X16, X16},
		{BME280, X2, Off, X4},
		{BMP280, X1, X8, X1},
	} {
		t.Run(fmt.Sprintf("%v_%d_%d_%d", tc.chip, tc.t.Factor(), tc.p.Factor(), tc.h.Factor()), func(t *testing.T) {
			o := DefaultOpts
			o.Temperature, o.Pressure, o.Humidity = tc.t, tc.p, tc.h
			c, chip, _, d := newSimDev(t, 7, tc.chip, o)
			if d.Chip() != tc.chip {
				t.Fatalf("found %v, want %v", d.Chip(), tc.chip)
			}
			// A day in 90-minute steps covers the temperature cycle.
			for i := 0; i < 16; i++ {
				c.Advance(90 * time.Minute)
				m, err := d.Sense(context.Background())
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				wx := chip.Measured()
				if got := m.Temperature.Celsius(); math.Abs(got-wx.TempC) > 0.015 {
					t.Errorf("step %d: temperature %.3f, world %.3f", i, got, wx.TempC)
				}
				if m.HasPressure != (tc.p != Off) {
					t.Fatalf("HasPressure %v with pressure oversampling %d", m.HasPressure, tc.p.Factor())
				}
				if got := float64(m.Pressure) / float64(physic.Pascal); m.HasPressure && math.Abs(got-wx.PressurePa) > 0.5 {
					t.Errorf("step %d: pressure %.2f, world %.2f", i, got, wx.PressurePa)
				}
				wantH := tc.chip == BME280 && tc.h != Off
				if m.HasHumidity != wantH {
					t.Fatalf("HasHumidity %v, want %v", m.HasHumidity, wantH)
				}
				if got := float64(m.Humidity) / float64(physic.PercentRH); wantH && math.Abs(got-wx.RH) > 0.02 {
					t.Errorf("step %d: humidity %.3f, world %.3f", i, got, wx.RH)
				}
			}
		})
	}
}

// TestSimReadTooEarly proves the simulated chip holds results back for the
// measurement time, so the round trip above shows the driver really waits.
func TestSimReadTooEarly(t *testing.T) {
	_, _, _, d := newSimDev(t, 1, BME280, DefaultOpts)
	d.clock = drivertest.NewClock(time.Unix(0, 0)) // a clock the chip does not see: a driver that does not wait
	if _, err := d.Sense(context.Background()); !errors.Is(err, errNoData) {
		t.Fatalf("Sense without waiting: %v, want %v", err, errNoData)
	}
}

func TestSimFaults(t *testing.T) {
	_, chip, bus, d := newSimDev(t, 1, BME280, DefaultOpts)
	bus.Fail(0x76, sim.ErrNACK)
	if _, err := d.Sense(context.Background()); !errors.Is(err, sim.ErrNACK) {
		t.Fatalf("Sense on a silent chip: %v, want a NACK", err)
	}
	bus.Fail(0x76, nil)
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatalf("Sense after the chip answers again: %v", err)
	}
	// The simulated chip refuses what the real one would ignore or what the
	// driver must never send.
	for _, w := range [][]byte{
		{regReset, 0x01},                // not the reset word
		{regCalib1, 0},                  // calibration is read-only
		{regCtrlMeas, 0x27},             // normal mode
		{regCtrlHum, 0x01, regCtrlMeas}, // not register/value pairs
	} {
		if err := chip.Tx(w, nil); err == nil {
			t.Errorf("sim accepted write %#v", w)
		}
	}
	bmp := bme280sim.NewSim(sim.NewWorld(1), bme280sim.BMP280)
	if err := bmp.Tx([]byte{regCtrlHum, 1}, nil); err == nil {
		t.Error("BMP280 sim accepted a ctrl_hum write")
	}
}

func TestSenseHonoursContext(t *testing.T) {
	chip := bme280sim.NewSim(sim.NewWorld(1), bme280sim.BME280)
	bus := sim.NewBus("sim")
	bus.Attach(0x76, chip)
	d, err := New(bus, &Opts{Addr: 0x76, Temperature: X16, Pressure: X16, Humidity: X16})
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
	f.Add(simCalib1, simCalib2, exampleRaw(28000), true, true)
	f.Add(simCalib1, []byte(nil), exampleRaw(0)[:6], true, false)
	f.Add(make([]byte, calib1Len), simCalib2, []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}, false, true)
	f.Add(simCalib1, simCalib2, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, true, true)
	f.Fuzz(func(t *testing.T, c1, c2, raw []byte, pressure, humidity bool) {
		if len(c2) == 0 {
			c2 = nil
		}
		cal, err := parseCalibration(c1, c2)
		if err != nil {
			return
		}
		cal.pressure, cal.humidity = pressure, humidity
		m, err := decode(&cal, raw)
		if err != nil {
			return
		}
		drivertest.InRange(t, "temperature °C", m.Temperature.Celsius(), -40, 85)
		if m.HasPressure {
			drivertest.InRange(t, "pressure", m.Pressure, 300*physic.Pascal*100, 1100*physic.Pascal*100)
		}
		if m.HasHumidity {
			drivertest.InRange(t, "humidity", m.Humidity, 0, 100*physic.PercentRH)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	cal, _ := parseCalibration(simCalib1, simCalib2)
	cal.pressure, cal.humidity = true, true
	raw := exampleRaw(28000)
	for b.Loop() {
		if _, err := decode(&cal, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSenseSim(b *testing.B) {
	c, _, _, d := newSimDev(b, 1, BME280, DefaultOpts)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c.Sleeps = c.Sleeps[:0]
		if _, err := d.Sense(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
