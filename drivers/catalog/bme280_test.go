package catalog

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/bme280/bme280sim"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
)

func TestBME280OptionsTOML(t *testing.T) {
	d := lookup(t, "bme280")
	for _, tc := range []struct {
		src  string
		want bme280Options
		err  string
	}{
		{src: "", want: bme280Options{Temperature: 1, Pressure: 1, Humidity: 1}},
		{src: "oversampling_pressure = 16\noversampling_humidity = 0\nrequire_humidity = true",
			want: bme280Options{Temperature: 1, Pressure: 16, Humidity: 0, RequireHumidity: true}},
		{src: "oversampling_temperature = 5", err: "oversampling_temperature = 5"},
		{src: "oversampling = 4", err: "*"},
		{src: "require_humidity = \"yes\"", err: "*"},
	} {
		opts, err := decodeOpts(t, d, tc.src)
		if optsErr(t, tc.src, err, tc.err) {
			continue
		}
		if got := *opts.(*bme280Options); got != tc.want {
			t.Errorf("%q: decoded %+v, want %+v", tc.src, got, tc.want)
		}
	}
}

func TestBME280Entry(t *testing.T) {
	d := lookup(t, "bme280")
	if d.Kind != I2C || len(d.Addrs) != 2 || d.Addrs[0] != 0x76 || d.Addrs[1] != 0x77 {
		t.Fatalf("entry %+v", d)
	}
	o := d.Options().(*bme280Options)
	if *o != (bme280Options{Temperature: 1, Pressure: 1, Humidity: 1}) || o.Validate() != nil {
		t.Fatalf("defaults %+v", *o)
	}
}

func TestBME280OptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o   bme280Options
		key string
	}{
		{bme280Options{Temperature: 0, Pressure: 1, Humidity: 1}, "oversampling_temperature = 0"},
		{bme280Options{Temperature: 3, Pressure: 1, Humidity: 1}, "oversampling_temperature = 3"},
		{bme280Options{Temperature: 1, Pressure: 32, Humidity: 1}, "oversampling_pressure = 32"},
		{bme280Options{Temperature: 1, Pressure: 1, Humidity: -1}, "oversampling_humidity = -1"},
		{bme280Options{Temperature: 16, Pressure: 0, Humidity: 0}, ""},
	} {
		err := tc.o.Validate()
		if tc.key == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.o, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%+v: error %v, want it to name %q", tc.o, err, tc.key)
		}
	}
}

func TestBME280OpenAndRead(t *testing.T) {
	d := lookup(t, "bme280")
	world := sim.NewWorld(3)
	for _, tc := range []struct {
		name    string
		chip    sim.Chip
		opts    bme280Options
		want    []string // quantities, in order
		openErr string
	}{
		{name: "BME280 from the catalog's own simulation", chip: d.SimChip(SimSpec{Sensor: "air-1", Addr: 0x76, World: world}, nil),
			opts: bme280Options{Temperature: 1, Pressure: 1, Humidity: 1}, want: []string{drivers.Temperature, drivers.Humidity, drivers.Pressure}},
		{name: "BMP280 accepted, no humidity", chip: bme280sim.NewSim(world, bme280sim.BMP280),
			opts: bme280Options{Temperature: 1, Pressure: 1, Humidity: 1}, want: []string{drivers.Temperature, drivers.Pressure}},
		{name: "BMP280 refused with require_humidity", chip: bme280sim.NewSim(world, bme280sim.BMP280),
			opts:    bme280Options{Temperature: 1, Pressure: 1, Humidity: 1, RequireHumidity: true},
			openErr: "bus 1 address 0x76: the chip is a BMP280 (no humidity), config says bme280 with require_humidity = true"},
		{name: "pressure off", chip: bme280sim.NewSim(world, bme280sim.BME280),
			opts: bme280Options{Temperature: 2, Pressure: 0, Humidity: 4}, want: []string{drivers.Temperature, drivers.Humidity}},
		{name: "nothing at the address", opts: bme280Options{Temperature: 1, Pressure: 1, Humidity: 1},
			openErr: "bus 1 address 0x76: bme280: read chip id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := sim.NewBus("sim-i2c1")
			if tc.chip != nil {
				bus.Attach(0x76, tc.chip)
			}
			opts := tc.opts
			s, err := d.Open(Target{Sensor: "air-1", Bus: bus, BusName: "1", Addr: 0x76}, &opts)
			if drivertest.WantErr(t, "Open", err, tc.openErr) {
				return
			}
			defer s.Halt()
			vals, err := s.Read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(vals) != len(tc.want) {
				t.Fatalf("values %+v, want quantities %v", vals, tc.want)
			}
			units := map[string]string{drivers.Temperature: drivers.UnitCelsius, drivers.Humidity: drivers.UnitPercentRH, drivers.Pressure: drivers.UnitPascal}
			ranges := map[string][2]float64{drivers.Temperature: {-10, 40}, drivers.Humidity: {5, 100}, drivers.Pressure: {95000, 105000}}
			for i, v := range vals {
				r := ranges[v.Quantity]
				if v.Quantity != tc.want[i] || v.Unit != units[v.Quantity] || v.IsBool || math.IsNaN(v.Num) || v.Num < r[0] || v.Num > r[1] {
					t.Errorf("value %d: %+v", i, v)
				}
			}
		})
	}
}

func TestBME280OpenRejectsBadOptions(t *testing.T) {
	d := lookup(t, "bme280")
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x76, bme280sim.NewSim(sim.NewWorld(1), bme280sim.BME280))
	_, err := d.Open(Target{Bus: bus, BusName: "1", Addr: 0x76}, &bme280Options{Temperature: 5})
	if err == nil || !strings.Contains(err.Error(), "oversampling_temperature = 5") {
		t.Fatalf("Open with bad options: %v", err)
	}
}
