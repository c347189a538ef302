package catalog

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/bme280"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/pelletier/go-toml/v2"
)

// envDecodeOptions decodes a [[sensors]] table's driver keys into d's options
// strictly and validates them, as the agent's config decoder does. Shared by
// the environmental drivers' catalog tests (bme280, sht3x, sht4x, scd4x, sps30).
func envDecodeOptions(t *testing.T, name, src string) (any, error) {
	t.Helper()
	d, ok := Lookup(name)
	if !ok {
		t.Fatalf("driver %q is not registered", name)
	}
	opts := d.Options()
	if opts == nil {
		if strings.TrimSpace(src) != "" {
			return nil, errEnvNoOptions
		}
		return nil, nil
	}
	if err := toml.NewDecoder(bytes.NewReader([]byte(src))).DisallowUnknownFields().Decode(opts); err != nil {
		return nil, err
	}
	if v, ok := opts.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

var errEnvNoOptions = errors.New("driver takes no options")

func TestBME280OptionsTOML(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bme280Options
		err  string
	}{
		{src: "", want: bme280Options{Temperature: 1, Pressure: 1, Humidity: 1}},
		{src: "oversampling_pressure = 16\noversampling_humidity = 0\nrequire_humidity = true",
			want: bme280Options{Temperature: 1, Pressure: 16, Humidity: 0, RequireHumidity: true}},
		{src: "oversampling_temperature = 5", err: "oversampling_temperature = 5"},
		// Unknown keys and wrong types are the config decoder's to report
		// with file and line; here it is enough that they fail.
		{src: "oversampling = 4", err: "*"},
		{src: "require_humidity = \"yes\"", err: "*"},
	} {
		opts, err := envDecodeOptions(t, "bme280", tc.src)
		if tc.err != "" {
			if err == nil || (tc.err != "*" && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("%q: error %v, want it to name %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if got := *opts.(*bme280Options); got != tc.want {
			t.Errorf("%q: decoded %+v, want %+v", tc.src, got, tc.want)
		}
	}
}

func TestBME280Entry(t *testing.T) {
	d, ok := Lookup("bme280")
	if !ok {
		t.Fatal("bme280 not registered")
	}
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
	d, _ := Lookup("bme280")
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
		{name: "BMP280 accepted, no humidity", chip: bme280.NewSim(world, bme280.BMP280),
			opts: bme280Options{Temperature: 1, Pressure: 1, Humidity: 1}, want: []string{drivers.Temperature, drivers.Pressure}},
		{name: "BMP280 refused with require_humidity", chip: bme280.NewSim(world, bme280.BMP280),
			opts:    bme280Options{Temperature: 1, Pressure: 1, Humidity: 1, RequireHumidity: true},
			openErr: "bus 1 address 0x76: the chip is a BMP280 (no humidity), config says bme280 with require_humidity = true"},
		{name: "pressure off", chip: bme280.NewSim(world, bme280.BME280),
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
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("Open error %v, want %q", err, tc.openErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
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
	d, _ := Lookup("bme280")
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x76, bme280.NewSim(sim.NewWorld(1), bme280.BME280))
	_, err := d.Open(Target{Bus: bus, BusName: "1", Addr: 0x76}, &bme280Options{Temperature: 5})
	if err == nil || !strings.Contains(err.Error(), "oversampling_temperature = 5") {
		t.Fatalf("Open with bad options: %v", err)
	}
}

// envOpenRead opens driver name at addr on a simulated bus holding chip (none
// when nil) with opts, reads it once and halts it.
func envOpenRead(t *testing.T, name string, chip sim.Chip, addr uint16, opts any) ([]drivers.Value, error) {
	t.Helper()
	d, ok := Lookup(name)
	if !ok {
		t.Fatalf("driver %q is not registered", name)
	}
	bus := sim.NewBus("sim-i2c1")
	if chip != nil {
		bus.Attach(addr, chip)
	}
	s, err := d.Open(Target{Sensor: "env-1", Bus: bus, BusName: "1", Addr: addr}, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := s.Halt(); err != nil {
			t.Errorf("Halt: %v", err)
		}
	}()
	if s.String() == "" {
		t.Error("empty String()")
	}
	return s.Read(context.Background())
}

// envWant is a quantity a reading must carry, in its unit and range.
type envWant struct {
	quantity, unit string
	lo, hi         float64
}

func envCheckValues(t *testing.T, vals []drivers.Value, want []envWant) {
	t.Helper()
	if len(vals) != len(want) {
		t.Fatalf("values %+v, want %d", vals, len(want))
	}
	for i, w := range want {
		v := vals[i]
		if v.Quantity != w.quantity || v.Unit != w.unit || v.IsBool || math.IsNaN(v.Num) || v.Num < w.lo || v.Num > w.hi {
			t.Errorf("value %d: %+v, want %s in %s within %v..%v", i, v, w.quantity, w.unit, w.lo, w.hi)
		}
	}
}
