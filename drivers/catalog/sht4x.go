package catalog

import (
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sht4x"
	"github.com/cityedge/cityedge/drivers/sht4x/sht4xsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

// sht4xDriver is the catalog entry of driver "sht4x". No options: the
// high-precision measurement is the only one worth having at street
// sampling rates; the heater is not used.
var sht4xDriver = Driver{
	Name:    "sht4x",
	Kind:    I2C,
	Chips:   "Sensirion SHT40/SHT41/SHT43/SHT45",
	Addrs:   []uint16{0x44, 0x45, 0x46},
	Options: func() any { return nil },
	Open: func(t Target, _ any) (drivers.Sensor, error) {
		dev, err := sht4x.New(t.Bus, &sht4x.Opts{Addr: t.Addr, Clock: t.Clock})
		return openClimate(t, dev, err)
	},
	SimChip: func(s SimSpec, _ any) sim.Chip { return sht4xsim.NewSim(s.World, uint32(s.Seed)) },
}
