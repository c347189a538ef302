package catalog

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sht3x"
	"github.com/cityedge/cityedge/drivers/sht3x/sht3xsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/physic"
)

// sht3xDriver is the catalog entry of driver "sht3x".
var sht3xDriver = Driver{
	Name:  "sht3x",
	Kind:  I2C,
	Chips: "Sensirion SHT30/SHT31/SHT35",
	Addrs: []uint16{0x44, 0x45},
	// No options: single shot, high repeatability, as the datasheet
	// recommends for sampling every few seconds or slower.
	Options: func() any { return nil },
	Open:    openSHT3x,
	SimChip: func(s SimSpec, _ any) sim.Chip {
		return sht3xsim.NewSim(s.World, uint32(s.Seed))
	},
}

func openSHT3x(t Target, _ any) (drivers.Sensor, error) {
	dev, err := sht3x.New(t.Bus, &sht3x.Opts{Addr: t.Addr})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return climateSensor{dev, func(ctx context.Context) (physic.Temperature, physic.RelativeHumidity, error) {
		m, err := dev.Sense(ctx)
		return m.Temperature, m.Humidity, err
	}}, nil
}

// climateSensor adapts a chip that measures temperature and relative
// humidity (the SHT3x and SHT4x families) to drivers.Sensor.
type climateSensor struct {
	conn.Resource
	sense func(context.Context) (physic.Temperature, physic.RelativeHumidity, error)
}

func (s climateSensor) Read(ctx context.Context) ([]drivers.Value, error) {
	t, h, err := s.sense(ctx)
	if err != nil {
		return nil, err
	}
	return []drivers.Value{
		drivers.Number(drivers.Temperature, drivers.UnitCelsius, t.Celsius()),
		drivers.Number(drivers.Humidity, drivers.UnitPercentRH, float64(h)/float64(physic.PercentRH)),
	}, nil
}
