package catalog

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/cityedge/cityedge/drivers/sps30"
	"github.com/cityedge/cityedge/drivers/sps30/sps30sim"
)

// sps30Driver is the catalog entry of driver "sps30".
var sps30Driver = Driver{
	Name:    "sps30",
	Kind:    I2C,
	Chips:   "Sensirion SPS30",
	Addrs:   []uint16{0x69},
	Options: func() any { return &sps30Options{FanCleaningInterval: Duration(sps30.DefaultCleaningInterval)} },
	Open:    openSPS30,
	SimChip: func(s SimSpec, _ any) sim.Chip {
		return sps30sim.NewSim(s.World, fmt.Sprintf("SIM%016X", s.Seed))
	},
}

// sps30Options are the [[sensors]] keys of driver "sps30".
type sps30Options struct {
	// FanCleaningInterval is how often the sensor blows its fan at full
	// speed for 10 s to clean itself (default "168h", the sensor's own;
	// "0s" turns automatic cleaning off). Whole seconds.
	FanCleaningInterval Duration `toml:"fan_cleaning_interval"`
}

// Validate implements the options check the config decoder calls: the
// rule is the chip's (sps30.Opts.Validate).
func (o *sps30Options) Validate() error {
	c := o.chip(Target{})
	if err := c.Validate(); err != nil {
		return fmt.Errorf("fan_cleaning_interval = %q: %w", c.CleaningInterval, err)
	}
	return nil
}

// chip is the chip's options for t.
func (o *sps30Options) chip(t Target) sps30.Opts {
	return sps30.Opts{Addr: t.Addr, CleaningInterval: o.FanCleaningInterval.D(), Clock: t.Clock}
}

func openSPS30(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*sps30Options)
	if !ok {
		return nil, fmt.Errorf("%s: sps30: options of type %T", t.Where(), opts)
	}
	c := o.chip(t)
	dev, err := sps30.New(t.Bus, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return sps30Sensor{dev}, nil
}

type sps30Sensor struct{ dev *sps30.Dev }

// Read waits for the sensor's next measurement (one per second). The chip
// sends IEEE 754 float32 words: the values keep that precision (Number32).
func (s sps30Sensor) Read(ctx context.Context) ([]drivers.Value, error) {
	m, err := s.dev.Sense(ctx)
	if err != nil {
		return nil, err
	}
	return []drivers.Value{
		drivers.Number32(drivers.PM1, drivers.UnitUgM3, m.MassPM1),
		drivers.Number32(drivers.PM2_5, drivers.UnitUgM3, m.MassPM2_5),
		drivers.Number32(drivers.PM4, drivers.UnitUgM3, m.MassPM4),
		drivers.Number32(drivers.PM10, drivers.UnitUgM3, m.MassPM10),
	}, nil
}

func (s sps30Sensor) Halt() error    { return s.dev.Halt() }
func (s sps30Sensor) String() string { return s.dev.String() }
