package catalog

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sensirion"
	"github.com/cityedge/cityedge/drivers/sht3x"
	"github.com/cityedge/cityedge/drivers/sht3x/sht3xsim"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/physic"
)

// sht3xDriver is the catalog entry of driver "sht3x". No options: single
// shot, high repeatability, as the datasheet recommends for sampling every
// few seconds or slower.
var sht3xDriver = Driver{
	Name:    "sht3x",
	Kind:    I2C,
	Chips:   "Sensirion SHT30/SHT31/SHT35",
	Addrs:   []uint16{0x44, 0x45},
	Options: func() any { return nil },
	Open: func(t Target, _ any) (drivers.Sensor, error) {
		dev, err := sht3x.New(t.Bus, &sht3x.Opts{Addr: t.Addr, Clock: t.Clock})
		return openClimate(t, dev, err)
	},
	SimChip: func(s SimSpec, _ any) sim.Chip { return sht3xsim.NewSim(s.World, uint32(s.Seed)) },
}

// climateChip is a chip that measures temperature and relative humidity
// only (the SHT3x and SHT4x families).
type climateChip interface {
	conn.Resource
	Sense(context.Context) (sensirion.Climate, error)
}

// openClimate finishes the Open of a climate chip that New returned (dev,
// err).
func openClimate[C climateChip](t Target, dev C, err error) (drivers.Sensor, error) {
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return climateSensor{dev}, nil
}

// climateSensor adapts a climate chip to drivers.Sensor.
type climateSensor struct{ climateChip }

func (s climateSensor) Read(ctx context.Context) ([]drivers.Value, error) {
	m, err := s.Sense(ctx)
	if err != nil {
		return nil, err
	}
	return []drivers.Value{
		drivers.NumberAt(drivers.Temperature, drivers.UnitCelsius, m.Temperature.Celsius(), 2),                      // 16-bit word: 0.003 °C steps
		drivers.NumberAt(drivers.Humidity, drivers.UnitPercentRH, float64(m.Humidity)/float64(physic.PercentRH), 3), // 0.0015 %RH steps
	}, nil
}
