package catalog

import (
	"context"
	"fmt"
	"math"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/bh1750"
	"github.com/cityedge/cityedge/drivers/bh1750/bh1750sim"
	"github.com/cityedge/cityedge/drivers/sim"
)

// bh1750Driver is the catalog entry of driver "bh1750".
var bh1750Driver = Driver{
	Name:    "bh1750",
	Kind:    I2C,
	Chips:   "ROHM BH1750FVI ambient light sensor",
	Addrs:   []uint16{0x23, 0x5C},
	Options: func() any { return &lightOpts{MTreg: bh1750.MTregDefault} },
	Open:    openBH1750,
	SimChip: func(s SimSpec, _ any) sim.Chip { return bh1750sim.NewSim(s.World) },
}

// lightOpts are the options of a bh1750 sensor.
type lightOpts struct {
	// MTreg is the measurement time register, 31..254 (default 69).
	MTreg int `toml:"mtreg"`
}

// Validate checks the options, naming the offending key; the rule is the
// chip's (bh1750.Opts.Validate).
func (o *lightOpts) Validate() error {
	c := o.chip(Target{})
	if err := c.Validate(); err != nil || o.MTreg < 0 || o.MTreg > math.MaxUint8 {
		return fmt.Errorf("mtreg = %d: want %d to %d (%d is the chip's default; 31 for direct sun)", o.MTreg, bh1750.MTregMin, bh1750.MTregMax, bh1750.MTregDefault)
	}
	return nil
}

// chip is the chip's options for t.
func (o *lightOpts) chip(t Target) bh1750.Opts {
	return bh1750.Opts{Addr: t.Addr, MTreg: uint8(o.MTreg), Clock: t.Clock}
}

func openBH1750(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*lightOpts)
	if opts == nil {
		o, ok = &lightOpts{MTreg: bh1750.MTregDefault}, true
	}
	if !ok {
		return nil, fmt.Errorf("bh1750: options of type %T", opts)
	}
	c := o.chip(t)
	dev, err := bh1750.New(t.Bus, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return &lightSensor{dev: dev, where: t.Where()}, nil
}

// lightSensor adapts a bh1750.Dev to drivers.Sensor.
type lightSensor struct {
	dev   *bh1750.Dev
	where string
}

func (l *lightSensor) Read(ctx context.Context) ([]drivers.Value, error) {
	lx, err := l.dev.Sense(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.where, err)
	}
	return []drivers.Value{drivers.Number(drivers.Illuminance, drivers.UnitLux, float64(lx)/float64(bh1750.Lux))}, nil
}

func (l *lightSensor) Halt() error    { return l.dev.Halt() }
func (l *lightSensor) String() string { return l.dev.String() }
