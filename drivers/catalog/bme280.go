package catalog

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/bme280"
	"github.com/cityedge/cityedge/drivers/bme280/bme280sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/physic"
)

// bme280Driver is the catalog entry of driver "bme280".
var bme280Driver = Driver{
	Name:    "bme280",
	Kind:    I2C,
	Chips:   "Bosch BME280/BMP280",
	Addrs:   []uint16{0x76, 0x77},
	Options: func() any { return &bme280Options{Temperature: 1, Pressure: 1, Humidity: 1} },
	Open:    openBME280,
	SimChip: func(s SimSpec, _ any) sim.Chip { return bme280sim.NewSim(s.World, bme280sim.BME280) },
}

// bme280Options are the [[sensors]] keys of driver "bme280".
type bme280Options struct {
	// Oversampling per quantity: 1, 2, 4, 8 or 16 samples averaged, 0 to
	// skip pressure or humidity. More samples: less noise, longer conversion.
	Temperature int `toml:"oversampling_temperature"`
	Pressure    int `toml:"oversampling_pressure"`
	Humidity    int `toml:"oversampling_humidity"`
	// RequireHumidity refuses a BMP280 (many boards sold as BME280 carry
	// one) instead of reporting temperature and pressure only.
	RequireHumidity bool `toml:"require_humidity"`
}

func bme280Oversampling(n int) (bme280.Oversampling, bool) {
	for o := bme280.Off; o <= bme280.X16; o++ {
		if o.Factor() == n {
			return o, true
		}
	}
	return 0, false
}

// Validate implements the options check the config decoder calls: which
// settings the chip takes is its own rule (bme280.Opts.Validate); here the
// factors are only translated.
func (o *bme280Options) Validate() error {
	c, _ := o.chip(Target{})
	if _, ok := bme280Oversampling(o.Temperature); !ok || c.Validate() != nil {
		return fmt.Errorf("oversampling_temperature = %d: must be 1, 2, 4, 8 or 16", o.Temperature)
	}
	for _, k := range []struct {
		key string
		v   int
	}{{"oversampling_pressure", o.Pressure}, {"oversampling_humidity", o.Humidity}} {
		if _, ok := bme280Oversampling(k.v); !ok {
			return fmt.Errorf("%s = %d: must be 0 (off), 1, 2, 4, 8 or 16", k.key, k.v)
		}
	}
	return nil
}

// chip is the chip's options for t; ok is false when a factor has no
// setting.
func (o *bme280Options) chip(t Target) (c bme280.Opts, ok bool) {
	c = bme280.Opts{Addr: t.Addr, Clock: t.Clock}
	var okT, okP, okH bool
	c.Temperature, okT = bme280Oversampling(o.Temperature)
	c.Pressure, okP = bme280Oversampling(o.Pressure)
	c.Humidity, okH = bme280Oversampling(o.Humidity)
	return c, okT && okP && okH
}

func openBME280(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*bme280Options)
	if !ok {
		return nil, fmt.Errorf("%s: bme280: options of type %T", t.Where(), opts)
	}
	// Open is also handed options no config check saw (tests, tools): run
	// the same Validate rather than trust them.
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%s: bme280: %w", t.Where(), err)
	}
	do, _ := o.chip(t)
	dev, err := bme280.New(t.Bus, &do)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	if o.RequireHumidity && dev.Chip() != bme280.BME280 {
		return nil, fmt.Errorf("%s: the chip is a %s (no humidity), config says bme280 with require_humidity = true", t.Where(), dev.Chip())
	}
	return bme280Sensor{dev}, nil
}

type bme280Sensor struct{ dev *bme280.Dev }

func (s bme280Sensor) Read(ctx context.Context) ([]drivers.Value, error) {
	m, err := s.dev.Sense(ctx)
	if err != nil {
		return nil, err
	}
	v := make([]drivers.Value, 0, 3)
	v = append(v, drivers.NumberAt(drivers.Temperature, drivers.UnitCelsius, m.Temperature.Celsius(), 2)) // 0.01 °C
	if m.HasHumidity {
		v = append(v, drivers.NumberAt(drivers.Humidity, drivers.UnitPercentRH, float64(m.Humidity)/float64(physic.PercentRH), 3)) // 1/1024 %RH
	}
	if m.HasPressure {
		v = append(v, drivers.NumberAt(drivers.Pressure, drivers.UnitPascal, float64(m.Pressure)/float64(physic.Pascal), 2)) // 1/256 Pa; datasheet resolution 0.18 Pa
	}
	return v, nil
}

func (s bme280Sensor) Halt() error    { return s.dev.Halt() }
func (s bme280Sensor) String() string { return s.dev.String() }
