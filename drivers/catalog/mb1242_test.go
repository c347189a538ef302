package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/i2c/i2ctest"
)

func TestMB1242Options(t *testing.T) {
	d := lookup(t, "mb1242")
	if d.Kind != I2C || d.Addrs[0] != 0x70 || d.SimChip == nil {
		t.Fatalf("mb1242 registered as %+v", d)
	}
	cases := []struct {
		src     string
		want    float64
		wantErr string
	}{
		{"", 1.8, ""},
		{"threshold_m = 2.25", 2.25, ""},
		{"threshold_m = 0.1", 0, "threshold_m = 0.1"},
		{"threshold_m = 8", 0, "threshold_m = 8"},
		{`threshold_m = "1.5"`, 0, "cannot decode TOML string"},
		{"threshold = 1.5", 0, "strict mode"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			opts, err := decodeOpts(t, d, tc.src)
			if drivertest.WantErr(t, "decode", err, tc.wantErr) {
				return
			}
			if got := opts.(*rangerOpts).ThresholdM; got != tc.want {
				t.Errorf("threshold_m %g, want %g", got, tc.want)
			}
		})
	}
}

func TestMB1242Simulated(t *testing.T) {
	d := lookup(t, "mb1242")
	bus := sim.NewBus("sim-i2c1")
	spec := SimSpec{Sensor: "bay-ceiling-1", Addr: 0x70, Bay: sim.NewBay(2, time.Hour), Seed: 2}
	bus.Attach(0x70, d.SimChip(spec, d.Options()))
	s, err := d.Open(Target{Sensor: spec.Sensor, Bus: bus, BusName: "1", Addr: 0x70}, d.Options())
	if err != nil {
		t.Fatal(err)
	}
	vals, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 2 || vals[0].Quantity != drivers.Distance || vals[0].Unit != drivers.UnitMetre ||
		vals[0].Num < 2.5 || vals[0].Num > 2.7 || vals[1] != drivers.Flag(drivers.Occupied, false) {
		t.Errorf("Read() = %+v, want the floor at about 2.6 m and not occupied", vals)
	}
}

func TestMB1242Faults(t *testing.T) {
	d := lookup(t, "mb1242")
	pb := drivertest.Playback(t, []i2ctest.IO{{Addr: 0x70, W: []byte{0x51}}, {Addr: 0x70, R: []byte{0x03, 0x00}}}, -1)
	_, err := d.Open(Target{Sensor: "r", Bus: pb, BusName: "1", Addr: 0x70}, nil)
	if err == nil || !strings.Contains(err.Error(), "bus 1 address 0x70: mb1242: range 768 cm") {
		t.Errorf("Open on a chip answering 768 cm: %v", err)
	}
	// A sensor that stops answering: the reading is an error, not a value.
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x70, d.SimChip(SimSpec{Sensor: "r"}, nil))
	s, err := d.Open(Target{Sensor: "r", Bus: bus, BusName: "1", Addr: 0x70}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus.Detach(0x70)
	if vals, err := s.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "bus 1 address 0x70: mb1242: range command") {
		t.Errorf("Read after unplugging: %+v, %v", vals, err)
	}
}

// TestOccupancyOnly: with occupancy_only the parking detectors send the
// decision and nothing that describes the vehicle.
func TestOccupancyOnly(t *testing.T) {
	for _, name := range []string{"mb1242", "qmc5883l"} {
		t.Run(name, func(t *testing.T) {
			d := lookup(t, name)
			opts := d.Options()
			switch o := opts.(type) {
			case *rangerOpts:
				o.OccupancyOnly = true
			case *qmcOpts:
				o.OccupancyOnly = true
				o.LearnSamples = 1
			}
			bus := sim.NewBus("sim-i2c1")
			spec := SimSpec{Sensor: "bay-" + name, Addr: d.Addrs[0], Bay: sim.NewBay(2, time.Hour), Seed: 2}
			bus.Attach(d.Addrs[0], d.SimChip(spec, opts))
			s, err := d.Open(Target{Sensor: spec.Sensor, Bus: bus, BusName: "1", Addr: d.Addrs[0]}, opts)
			if err != nil {
				t.Fatal(err)
			}
			var vals []drivers.Value
			for i := 0; i < 3 && len(vals) == 0; i++ {
				if vals, err = s.Read(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if len(vals) != 1 || vals[0].Quantity != drivers.Occupied || !vals[0].IsBool {
				t.Errorf("Read() = %+v, want only the occupied flag", vals)
			}
		})
	}
}
