package catalog

import (
	"context"
	"fmt"
	"math"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/scd4x"
	"github.com/cityedge/cityedge/drivers/scd4x/scd4xsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/physic"
)

// scd4xDriver is the catalog entry of driver "scd4x".
var scd4xDriver = Driver{
	Name:    "scd4x",
	Kind:    I2C,
	Chips:   "Sensirion SCD40/SCD41",
	Addrs:   []uint16{0x62},
	Options: func() any { return &scd4xOptions{SelfCalibration: true} },
	Open:    openSCD4x,
	SimChip: func(s SimSpec, _ any) sim.Chip {
		return scd4xsim.NewSim(s.World, s.Seed&0xFFFF_FFFF_FFFF)
	},
}

// scd4xOptions are the [[sensors]] keys of driver "scd4x".
type scd4xOptions struct {
	// SelfCalibration is the sensor's automatic self-calibration (default
	// on): it takes the lowest CO2 seen over a week as fresh air.
	SelfCalibration bool `toml:"self_calibration"`
	// AltitudeM is the sensor's height above sea level in metres (0..3000),
	// for the sensor's pressure compensation.
	AltitudeM int `toml:"altitude_m"`
}

// Validate implements the options check the config decoder calls: the
// rule is the chip's (scd4x.Opts.Validate).
func (o *scd4xOptions) Validate() error {
	c := o.chip(Target{})
	if err := c.Validate(); err != nil || o.AltitudeM < 0 || o.AltitudeM > math.MaxUint16 {
		return fmt.Errorf("altitude_m = %d: must be 0..%d (metres above sea level)", o.AltitudeM, scd4x.MaxAltitude)
	}
	return nil
}

// chip is the chip's options for t, from validated options.
func (o *scd4xOptions) chip(t Target) scd4x.Opts {
	alt := uint16(math.MaxUint16) // beyond any altitude: refused by Validate
	if o.AltitudeM >= 0 && o.AltitudeM <= math.MaxUint16 {
		alt = uint16(o.AltitudeM)
	}
	return scd4x.Opts{Addr: t.Addr, SelfCalibration: o.SelfCalibration, Altitude: alt, Clock: t.Clock}
}

func openSCD4x(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*scd4xOptions)
	if !ok {
		return nil, fmt.Errorf("%s: scd4x: options of type %T", t.Where(), opts)
	}
	c := o.chip(t)
	dev, err := scd4x.New(t.Bus, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return scd4xSensor{dev}, nil
}

type scd4xSensor struct{ dev *scd4x.Dev }

// Read waits for the sensor's next measurement: it makes one every 5 s, so a
// shorter interval still yields one reading per 5 s.
func (s scd4xSensor) Read(ctx context.Context) ([]drivers.Value, error) {
	m, err := s.dev.Sense(ctx)
	if err != nil {
		return nil, err
	}
	return []drivers.Value{
		drivers.Number(drivers.CO2, drivers.UnitPPM, float64(m.CO2)),
		drivers.NumberAt(drivers.Temperature, drivers.UnitCelsius, m.Temperature.Celsius(), 2),                      // 16-bit word: 0.003 °C steps
		drivers.NumberAt(drivers.Humidity, drivers.UnitPercentRH, float64(m.Humidity)/float64(physic.PercentRH), 3), // 0.0015 %RH steps
	}, nil
}

func (s scd4xSensor) Halt() error    { return s.dev.Halt() }
func (s scd4xSensor) String() string { return s.dev.String() }
