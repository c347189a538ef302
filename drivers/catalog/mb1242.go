package catalog

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/mb1242"
	"github.com/cityedge/cityedge/drivers/mb1242/mb1242sim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/physic"
)

// mb1242Driver is the catalog entry of driver "mb1242".
var mb1242Driver = Driver{
	Name:    "mb1242",
	Kind:    I2C,
	Chips:   "MaxBotix I2CXL-MaxSonar-EZ (MB1242 and family) overhead ultrasonic ranger",
	Addrs:   []uint16{0x70},
	Options: func() any { return &rangerOpts{ThresholdM: 1.8} },
	Open:    openMB1242,
	SimChip: func(s SimSpec, _ any) sim.Chip { return mb1242sim.NewSim(simBay(s), s.Seed) },
}

// rangerOpts are the options of an mb1242 sensor.
type rangerOpts struct {
	// ThresholdM: the bay is occupied when the distance is below this many
	// metres (default 1.8).
	ThresholdM float64 `toml:"threshold_m"`
	// OccupancyOnly sends only the occupied decision, not the distance
	// (data minimisation: the distance tells a vehicle's height).
	OccupancyOnly bool `toml:"occupancy_only"`
}

// Validate checks the options, naming the offending key.
func (o *rangerOpts) Validate() error {
	if !(o.ThresholdM >= 0.2 && o.ThresholdM <= 7.65) {
		return fmt.Errorf("threshold_m = %g: want 0.2 to 7.65 (metres, the sensor's range)", o.ThresholdM)
	}
	return nil
}

func openMB1242(t Target, opts any) (drivers.Sensor, error) {
	o, ok := opts.(*rangerOpts)
	if opts == nil {
		o, ok = &rangerOpts{ThresholdM: 1.8}, true
	}
	if !ok {
		return nil, fmt.Errorf("mb1242: options of type %T", opts)
	}
	dev, err := mb1242.New(t.Bus, &mb1242.Opts{Addr: t.Addr, Clock: t.Clock})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return &ranger{dev: dev, threshold: o.ThresholdM, where: t.Where(), occupancyOnly: o.OccupancyOnly}, nil
}

// ranger adapts an mb1242.Dev to drivers.Sensor.
type ranger struct {
	dev           *mb1242.Dev
	threshold     float64 // m
	where         string
	occupancyOnly bool
}

func (r *ranger) Read(ctx context.Context) ([]drivers.Value, error) {
	d, err := r.dev.Sense(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.where, err)
	}
	m := float64(d) / float64(physic.Metre)
	if r.occupancyOnly {
		return []drivers.Value{drivers.Flag(drivers.Occupied, m < r.threshold)}, nil
	}
	return []drivers.Value{
		drivers.Number(drivers.Distance, drivers.UnitMetre, m),
		drivers.Flag(drivers.Occupied, m < r.threshold),
	}, nil
}

func (r *ranger) Halt() error    { return r.dev.Halt() }
func (r *ranger) String() string { return r.dev.String() }
