package sht3x_test

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers/sht3x"
	"github.com/cityedge/cityedge/drivers/sht3x/sht3xsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func Example() {
	// On a gateway the bus comes from i2creg.Open("1") after host.Init().
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x44, sht3xsim.NewSim(sim.NewWorld(1), 0x0BADCAFE))

	dev, err := sht3x.New(bus, &sht3x.DefaultOpts)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := dev.Sense(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %.2f °C, %.1f %%RH\n", dev, m.Temperature.Celsius(), float64(m.Humidity)/1e5)
}
