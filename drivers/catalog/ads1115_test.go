package catalog

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/ads1115/ads1115sim"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
)

const noiseChannel = `channels = [{ channel = 0, gain = "4.096V", quantity = "noise", unit = "dB", from = [0.4, 2.0], to = [30.0, 130.0] }]`

func TestADS1115Options(t *testing.T) {
	d := lookup(t, "ads1115")
	if d.Kind != I2C || len(d.Addrs) != 4 || d.Addrs[0] != 0x48 || d.Addrs[3] != 0x4B || d.SimChip == nil {
		t.Fatalf("ads1115 registered as %+v", d)
	}
	ch := func(body string) string { return "channels = [{ " + body + " }]" }
	base := `channel = 0, quantity = "noise", unit = "dB", from = [0.4, 2.0], to = [30.0, 130.0]`
	cases := []struct {
		name    string
		src     string
		wantErr string
	}{
		{"the issue's example", noiseChannel, ""},
		{"gain defaults to 6.144V", ch(base), ""},
		{"tables and rate", "data_rate = 8\n[[channels]]\nchannel = 3\ngain = \"0.256V\"\nquantity = \"no2\"\nunit = \"ppb\"\nfrom = [0.0, 0.25]\nto = [0.0, 500.0]\n" +
			"[[channels]]\nchannel = 3\ngain = \"2.048V\"\nquantity = \"cell_v\"\nunit = \"V\"\nfrom = [0.0, 2.0]\nto = [0.0, 2.0]", ""},
		{"inverted map", ch(`channel = 1, quantity = "level", unit = "m", from = [2.0, 0.4], to = [0.0, 5.0]`), ""},
		{"no channels", "", "channels: required"},
		{"no channel number", ch(`quantity = "noise", unit = "dB", from = [0.4, 2.0], to = [30.0, 130.0]`), "channels[0].channel: required"},
		{"channel 4", ch(strings.Replace(base, "channel = 0", "channel = 4", 1)), "channels[0].channel = 4: want 0 to 3"},
		{"bad gain", ch(base + `, gain = "5V"`), `channels[0].gain = "5V"`},
		{"quantity case", ch(strings.Replace(base, `"noise"`, `"Noise"`, 1)), `channels[0].quantity = "Noise"`},
		{"quantity charset", ch(strings.Replace(base, `"noise"`, `"noise level"`, 1)), `channels[0].quantity = "noise level"`},
		{"quantity empty", ch(strings.Replace(base, `"noise"`, `""`, 1)), `channels[0].quantity = ""`},
		{"quantity occupied", ch(strings.Replace(base, `"noise"`, `"occupied"`, 1)), "reserved"},
		{"duplicate quantity", "channels = [{ " + base + " }, { " + strings.Replace(base, "channel = 0", "channel = 1", 1) + " }]",
			`channels[1].quantity = "noise": already used by channels[0]`},
		{"no unit", ch(`channel = 0, quantity = "noise", from = [0.4, 2.0], to = [30.0, 130.0]`), "channels[0].unit: required"},
		{"unit charset", ch(strings.Replace(base, `"dB"`, `"d B"`, 1)), `channels[0].unit = "d B"`},
		{"one from", ch(strings.Replace(base, "[0.4, 2.0]", "[0.4]", 1)), "channels[0].from = [0.4]: want two numbers"},
		{"equal from", ch(strings.Replace(base, "[0.4, 2.0]", "[1.0, 1.0]", 1)), "channels[0].from = [1, 1]: the two numbers must differ"},
		{"equal to", ch(strings.Replace(base, "[30.0, 130.0]", "[30.0, 30.0]", 1)), "channels[0].to = [30, 30]"},
		{"infinite to", ch(strings.Replace(base, "[30.0, 130.0]", "[30.0, inf]", 1)), "want finite numbers"},
		{"from beyond the gain", ch(strings.Replace(base, "[0.4, 2.0]", "[0.4, 2.5]", 1) + `, gain = "2.048V"`),
			"channels[0].from = [0.4, 2.5]: 2.5 V is outside 0 to 2.048 V"},
		{"negative from", ch(strings.Replace(base, "[0.4, 2.0]", "[-0.1, 2.0]", 1)), "-0.1 V is outside"},
		{"data rate", "data_rate = 100\n" + noiseChannel, "data_rate = 100"},
		{"unknown channel key", ch(base + ", offset = 1"), "strict mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeOpts(t, d, tc.src)
			drivertest.WantErr(t, "decode", err, tc.wantErr)
		})
	}
}

func TestADS1115Map(t *testing.T) {
	zero := 0
	noise := adcChannel{Channel: &zero, Quantity: "noise", Unit: "dB", From: []float64{0.4, 2.0}, To: []float64{30, 130}}
	inverted := adcChannel{Channel: &zero, Quantity: "level", Unit: "m", From: []float64{2.0, 0.4}, To: []float64{0, 5}}
	cases := []struct {
		c    adcChannel
		v    float64
		want float64
		err  bool
	}{
		{noise, 0.4, 30, false},
		{noise, 2.0, 130, false},
		{noise, 1.2, 80, false},
		{noise, 0.38, 28.75, false}, // within 2 % of the span below
		{noise, 2.03, 131.875, false},
		{noise, 0.3, 0, true}, // live zero lost: broken wire or dead meter
		{noise, 0.0, 0, true},
		{noise, 2.1, 0, true},
		{inverted, 2.0, 0, false},
		{inverted, 0.4, 5, false},
		{inverted, 1.2, 2.5, false},
		{inverted, 2.5, 0, true},
	}
	for _, tc := range cases {
		got, err := tc.c.toValue(tc.v)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "outside the configured from") {
				t.Errorf("%s at %g V: %g, %v; want an error", tc.c.Quantity, tc.v, got, err)
			}
			continue
		}
		if err != nil || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s at %g V: %g, %v; want %g", tc.c.Quantity, tc.v, got, err, tc.want)
		}
		if back := tc.c.toVolts(got); math.Abs(back-tc.v) > 1e-9 && got >= 0 && got <= 130 && tc.v >= 0.4 && tc.v <= 2.0 {
			t.Errorf("%s: toVolts(%g) = %g, want %g", tc.c.Quantity, got, back, tc.v)
		}
	}
}

// The simulated street's noise, through a simulated noise meter's
// 0.4–2.0 V output and the ADC, comes back as dB within quantisation.
func TestADS1115Simulated(t *testing.T) {
	d := lookup(t, "ads1115")
	src := noiseChannel[:len(noiseChannel)-1] + `, { channel = 2, quantity = "vibration", unit = "m/s2", from = [0.5, 2.5], to = [0.0, 10.0] }]`
	opts, err := decodeOpts(t, d, src)
	if err != nil {
		t.Fatal(err)
	}
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x49, d.SimChip(SimSpec{Sensor: "noise-1", Addr: 0x49, World: sim.NewWorld(4)}, opts))
	s, err := d.Open(Target{Sensor: "noise-1", Bus: bus, BusName: "1", Addr: 0x49}, opts)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 2 || vals[0].Quantity != "noise" || vals[0].Unit != drivers.UnitDecibel || vals[1].Quantity != "vibration" || vals[1].Unit != "m/s2" {
		t.Fatalf("Read() = %+v, want noise in dB and vibration in m/s2", vals)
	}
	// The simulated street is 48–70 dB(A) give or take its noise.
	if n := vals[0].Num; n < 40 || n > 80 {
		t.Errorf("noise %g dB, want a street level", n)
	}
	if v := vals[1].Num; v < 0 || v > 10 {
		t.Errorf("vibration %g, want within the configured 0–10", v)
	}
}

func TestADS1115Faults(t *testing.T) {
	d := lookup(t, "ads1115")
	if _, err := d.Open(Target{Sensor: "a", Bus: sim.NewBus("b"), BusName: "1", Addr: 0x48}, d.Options()); err == nil || !strings.Contains(err.Error(), "channels: required") {
		t.Errorf("Open without channels: %v", err)
	}
	if _, err := d.Open(Target{Sensor: "a", Bus: sim.NewBus("b"), BusName: "1", Addr: 0x48}, nil); err == nil || !strings.Contains(err.Error(), "channels map is required") {
		t.Errorf("Open with no options: %v", err)
	}
	opts, err := decodeOpts(t, d, noiseChannel)
	if err != nil {
		t.Fatal(err)
	}
	// A noise meter whose output fell to 0 V (its live zero is 0.4 V).
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x48, ads1115sim.NewSim(func(int, time.Time) float64 { return 0 }))
	s, err := d.Open(Target{Sensor: "a", Bus: bus, BusName: "1", Addr: 0x48}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if vals, err := s.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "bus 1 address 0x48: ads1115: AIN0 reads 0.0000 V, outside the configured from") {
		t.Errorf("Read of a dead transmitter: %+v, %v", vals, err)
	}
	// A 5 V signal into the ±4.096 V range saturates: an error, not 4.096 V.
	bus.Attach(0x48, ads1115sim.NewSim(func(int, time.Time) float64 { return 5 }))
	if vals, err := s.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "full scale") {
		t.Errorf("Read of a saturated input: %+v, %v", vals, err)
	}
}
