package ads1115

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/ads1115/ads1115sim"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

func TestDecode(t *testing.T) {
	nV := physic.NanoVolt
	cases := []struct {
		raw  []byte
		g    Gain
		want physic.ElectricPotential
		err  string
	}{
		// LSB sizes from the FSR and LSB size table: FSR / 2^15.
		{[]byte{0x00, 0x01}, FSR6144mV, 187500 * nV, ""},
		{[]byte{0x00, 0x01}, FSR4096mV, 125000 * nV, ""},
		{[]byte{0x00, 0x01}, FSR2048mV, 62500 * nV, ""},
		{[]byte{0x00, 0x01}, FSR1024mV, 31250 * nV, ""},
		{[]byte{0x00, 0x01}, FSR512mV, 15625 * nV, ""},
		{[]byte{0x00, 0x01}, FSR256mV, 7813 * nV, ""}, // 7.8125 µV, rounded
		{[]byte{0xFF, 0xFF}, FSR256mV, -7813 * nV, ""},
		{[]byte{0x3E, 0x80}, FSR4096mV, 2 * physic.Volt, ""},        // 16000 counts
		{[]byte{0x0C, 0x80}, FSR4096mV, 400 * physic.MilliVolt, ""}, // 3200 counts
		{[]byte{0x7F, 0xFE}, FSR2048mV, 2047875 * physic.MicroVolt, ""},
		{[]byte{0x80, 0x01}, FSR2048mV, -2047937500 * nV, ""},
		{[]byte{0x00, 0x00}, FSR6144mV, 0, ""},
		{[]byte{0x7F, 0xFF}, FSR4096mV, 0, "at or above +4.096V full scale"},
		{[]byte{0x80, 0x00}, FSR4096mV, 0, "at or below −4.096V full scale"},
		{[]byte{0x01}, FSR4096mV, 0, "1 bytes, want 2"},
		{[]byte{0x00, 0x01}, Gain(6), 0, "invalid gain"},
	}
	for _, tc := range cases {
		got, err := decode(tc.raw, tc.g)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("decode(% x, %s) = %s, %v; want an error containing %q", tc.raw, tc.g, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("decode(% x, %s) = %s, %v; want %s", tc.raw, tc.g, got, err, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]Gain{"6.144V": FSR6144mV, "4.096V": FSR4096mV, "2.048V": FSR2048mV, "1.024V": FSR1024mV, "0.512V": FSR512mV, "0.256V": FSR256mV} {
		if g, err := ParseGain(s); err != nil || g != want {
			t.Errorf("ParseGain(%q) = %v, %v; want %v", s, g, err, want)
		}
	}
	for _, s := range []string{"", "4.096", "4V", "4.096v", "±4.096V", "0.128V"} {
		if _, err := ParseGain(s); err == nil {
			t.Errorf("ParseGain(%q) accepted", s)
		}
	}
	for sps, want := range map[int]Rate{8: SPS8, 128: SPS128, 860: SPS860, 475: SPS475} {
		if r, err := ParseRate(sps); err != nil || r != want {
			t.Errorf("ParseRate(%d) = %v, %v; want %v", sps, r, err, want)
		}
	}
	for _, sps := range []int{0, 100, 1000, -8} {
		if _, err := ParseRate(sps); err == nil {
			t.Errorf("ParseRate(%d) accepted", sps)
		}
	}
}

func TestNew(t *testing.T) {
	// AIN0/GND (100), ±6.144 V (000), single-shot, 128 SPS (100), comparator
	// off (11), OS not set: 0100 0001 1000 0011.
	write := i2ctest.IO{Addr: 0x48, W: []byte{0x01, 0x41, 0x83}}
	read := func(hi, lo byte) i2ctest.IO { return i2ctest.IO{Addr: 0x48, W: []byte{0x01}, R: []byte{hi, lo}} }
	cases := []struct {
		name   string
		ops    []i2ctest.IO
		nackAt int
		err    string
		nacked bool // the error the case ends on comes from the NACK
	}{
		{"reads back with OS idle", []i2ctest.IO{write, read(0xC1, 0x83)}, -1, "", false},
		{"reads back the reset value", []i2ctest.IO{write, read(0x85, 0x83)}, -1, "config register reads 0x8583 after writing 0x4183", false},
		{"nothing there", nil, 0, "write config", true},
		{"stops answering", []i2ctest.IO{write}, 1, "read config", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(drivertest.Playback(t, tc.ops, tc.nackAt), nil)
			if drivertest.WantErr(t, "New", err, tc.err) {
				drivertest.WantNACK(t, "New", err, tc.nackAt, tc.nacked)
			}
		})
	}
}

func TestSense(t *testing.T) {
	// AIN2/GND (110), ±4.096 V (001), single-shot, 128 SPS, comparator off,
	// OS = 1: 1110 0011 1000 0011.
	start := i2ctest.IO{Addr: 0x48, W: []byte{0x01, 0xE3, 0x83}}
	status := func(hi byte) i2ctest.IO { return i2ctest.IO{Addr: 0x48, W: []byte{0x01}, R: []byte{hi, 0x83}} }
	conv := func(hi, lo byte) i2ctest.IO { return i2ctest.IO{Addr: 0x48, W: []byte{0x00}, R: []byte{hi, lo}} }
	period := time.Second/128 + time.Second/1280 + 50*time.Microsecond
	never := []i2ctest.IO{start}
	for i := 0; i <= 16; i++ {
		never = append(never, status(0x63))
	}
	cases := []struct {
		name   string
		ain    int
		g      Gain
		ops    []i2ctest.IO
		nackAt int
		want   physic.ElectricPotential
		sleeps int
		err    string
		nacked bool // the error the case ends on comes from the NACK
	}{
		{"done after the period", 2, FSR4096mV, []i2ctest.IO{start, status(0xE3), conv(0x3E, 0x80)}, -1, 2 * physic.Volt, 1, "", false},
		{"one poll more", 2, FSR4096mV, []i2ctest.IO{start, status(0x63), status(0xE3), conv(0x0C, 0x80)}, -1, 400 * physic.MilliVolt, 2, "", false},
		{"never done", 2, FSR4096mV, never, -1, 0, 17, "conversion not done", false},
		{"saturated", 2, FSR4096mV, []i2ctest.IO{start, status(0xE3), conv(0x7F, 0xFF)}, -1, 0, 1, "AIN2: input at or above +4.096V", false},
		{"nack on start", 2, FSR4096mV, nil, 0, 0, 0, "start conversion of AIN2", true},
		{"nack on status", 2, FSR4096mV, []i2ctest.IO{start}, 1, 0, 1, "read status of AIN2", true},
		{"nack on read", 2, FSR4096mV, []i2ctest.IO{start, status(0xE3)}, 2, 0, 1, "read conversion of AIN2", true},
		{"no AIN4", 4, FSR4096mV, nil, -1, 0, 0, "AIN4: want 0 to 3", false},
		{"no gain 6", 0, Gain(6), nil, -1, 0, 0, "invalid gain", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := drivertest.NewClock(time.Unix(0, 0))
			d := &Dev{c: i2c.Dev{Bus: drivertest.Playback(t, tc.ops, tc.nackAt), Addr: 0x48}, rate: SPS128, clock: c}
			got, err := d.Sense(context.Background(), tc.ain, tc.g)
			if len(c.Sleeps) != tc.sleeps {
				t.Errorf("slept %v, want %d sleeps", c.Sleeps, tc.sleeps)
			}
			for i, s := range c.Sleeps {
				if want := map[bool]time.Duration{true: period, false: period / 8}[i == 0]; s != want {
					t.Errorf("sleep %d: %s, want %s", i, s, want)
				}
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

// Sim → New/Sense through sim.Bus on a fake clock: every input at every
// gain and data rate decodes to the simulated voltage within half a count,
// or is reported as beyond full scale.
func TestSimRoundTrip(t *testing.T) {
	volts := [4]float64{1.234567, 0.4, 2.0, 3.3}
	c := drivertest.NewClock(time.Unix(0, 0))
	chip := ads1115sim.NewSim(func(ain int, _ time.Time) float64 { return volts[ain] })
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x4A, chip)
	for _, rate := range []Rate{SPS8, SPS128, SPS860} {
		d, err := New(bus, &Opts{Addr: 0x4A, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		d.clock = c
		for g := FSR6144mV; g <= FSR256mV; g++ {
			fs := float64(g.FullScale()) / 1e9
			for ain, v := range volts {
				got, err := d.Sense(context.Background(), ain, g)
				if v >= fs {
					if err == nil || !strings.Contains(err.Error(), "full scale") {
						t.Errorf("AIN%d = %g V at %s: %s, %v; want a full-scale error", ain, v, g, got, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("AIN%d = %g V at %s: %v", ain, v, g, err)
				}
				if diff := math.Abs(float64(got)/1e9 - v); diff > fs/32768/2+1e-9 {
					t.Errorf("AIN%d = %g V at %s: decoded %s", ain, v, g, got)
				}
			}
		}
	}
}

func TestSimRejectsUnknown(t *testing.T) {
	chip := ads1115sim.NewSim(nil)
	for _, tc := range []struct {
		w    []byte
		r    int
		want string
	}{
		{[]byte{0x04}, 2, "pointer 0x04"},
		{[]byte{0x01, 0x85}, 0, "write of 2 bytes"},
		{[]byte{0x00, 0x12, 0x34}, 0, "read-only"},
		{[]byte{0x01}, 3, "read of 3 bytes"},
	} {
		if err := chip.Tx(tc.w, make([]byte, tc.r)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Tx(% x, %d): %v, want an error containing %q", tc.w, tc.r, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x3E, 0x80}, uint8(1))
	f.Add([]byte{0x7F, 0xFF}, uint8(0))
	f.Add([]byte{0x80, 0x00}, uint8(5))
	f.Add([]byte{0x01}, uint8(9))
	f.Fuzz(func(t *testing.T, raw []byte, g uint8) {
		if got, err := decode(raw, Gain(g)); err == nil {
			fs := Gain(g).FullScale()
			drivertest.InRange(t, fmt.Sprintf("decode(% x, %d), short of full scale,", raw, g), got, -fs+1, fs-1)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := []byte{0x3E, 0x80}
	for b.Loop() {
		if _, err := decode(raw, FSR4096mV); err != nil {
			b.Fatal(err)
		}
	}
}

// One single-shot conversion through the simulated bus, waits skipped.
func BenchmarkSenseSim(b *testing.B) {
	c := drivertest.NewClock(time.Unix(0, 0))
	chip := ads1115sim.NewSim(func(int, time.Time) float64 { return 1.2 })
	chip.SetClock(c)
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x48, chip)
	d, err := New(bus, nil)
	if err != nil {
		b.Fatal(err)
	}
	d.clock = c
	for b.Loop() {
		c.Sleeps = c.Sleeps[:0]
		if _, err := d.Sense(context.Background(), 0, FSR4096mV); err != nil {
			b.Fatal(err)
		}
	}
}
