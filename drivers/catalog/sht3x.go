package catalog

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sht3x"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/physic"
)

func init() {
	Register(Driver{
		Name:  "sht3x",
		Kind:  I2C,
		Chips: "Sensirion SHT30/SHT31/SHT35",
		Addrs: []uint16{0x44, 0x45},
		// No options: single shot, high repeatability, as the datasheet
		// recommends for sampling every few seconds or slower.
		Options: func() any { return nil },
		Open:    openSHT3x,
		SimChip: func(s SimSpec, _ any) sim.Chip {
			return sht3x.NewSim(s.World, uint32(s.Seed))
		},
	})
}

func openSHT3x(t Target, _ any) (drivers.Sensor, error) {
	dev, err := sht3x.New(t.Bus, &sht3x.Opts{Addr: t.Addr})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Where(), err)
	}
	return sht3xSensor{dev}, nil
}

type sht3xSensor struct{ dev *sht3x.Dev }

func (s sht3xSensor) Read(ctx context.Context) ([]drivers.Value, error) {
	m, err := s.dev.Sense(ctx)
	if err != nil {
		return nil, err
	}
	return []drivers.Value{
		drivers.Number(drivers.Temperature, drivers.UnitCelsius, m.Temperature.Celsius()),
		drivers.Number(drivers.Humidity, drivers.UnitPercentRH, float64(m.Humidity)/float64(physic.PercentRH)),
	}, nil
}

func (s sht3xSensor) Halt() error    { return s.dev.Halt() }
func (s sht3xSensor) String() string { return s.dev.String() }
