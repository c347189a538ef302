package catalog

import (
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/scd4x/scd4xsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func TestSCD4xOptions(t *testing.T) {
	d := lookup(t, "scd4x")
	if d.Kind != I2C || len(d.Addrs) != 1 || d.Addrs[0] != 0x62 || d.SimChip == nil {
		t.Fatalf("entry %+v", d)
	}
	for _, tc := range []struct {
		src  string
		want scd4xOptions
		err  string
	}{
		{src: "", want: scd4xOptions{SelfCalibration: true}},
		{src: "self_calibration = false\naltitude_m = 520", want: scd4xOptions{SelfCalibration: false, AltitudeM: 520}},
		{src: "altitude_m = 3001", err: "altitude_m = 3001"},
		{src: "altitude_m = -5", err: "altitude_m = -5"},
		{src: "altitude = 10", err: "*"},
	} {
		opts, err := decodeOpts(t, d, tc.src)
		if optsErr(t, tc.src, err, tc.err) {
			continue
		}
		if got := *opts.(*scd4xOptions); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.src, got, tc.want)
		}
	}
}

// TestSCD4xOpenRead runs in real time: stop_periodic_measurement takes
// 500 ms and the first measurement 5 s, so it runs in parallel.
func TestSCD4xOpenRead(t *testing.T) {
	t.Parallel()
	d := lookup(t, "scd4x")
	chip := d.SimChip(SimSpec{Sensor: "co2-1", Addr: 0x62, World: sim.NewWorld(8), Seed: 77}, nil).(*scd4xsim.Sim)
	vals, err := envOpenRead(t, "scd4x", chip, 0x62, &scd4xOptions{SelfCalibration: false, AltitudeM: 35})
	if err != nil {
		t.Fatal(err)
	}
	envCheckValues(t, vals, []envWant{
		{drivers.CO2, drivers.UnitPPM, 400, 1200},
		{drivers.Temperature, drivers.UnitCelsius, -10, 40},
		{drivers.Humidity, drivers.UnitPercentRH, 5, 100},
	})
	if asc, alt := chip.Settings(); asc || alt != 35 {
		t.Errorf("sensor holds self-calibration %v, altitude %d", asc, alt)
	}
	if chip.Periodic() {
		t.Error("Halt left the sensor measuring")
	}
	_, err = envOpenRead(t, "scd4x", nil, 0x62, &scd4xOptions{})
	if err == nil || !strings.Contains(err.Error(), "bus 1 address 0x62: scd4x: stop_periodic_measurement") {
		t.Fatalf("Open with nothing at the address: %v", err)
	}
}
