package scd4x_test

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers/scd4x"
	"github.com/cityedge/cityedge/drivers/scd4x/scd4xsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func Example() {
	// On a gateway the bus comes from i2creg.Open("1") after host.Init().
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x62, scd4xsim.NewSim(sim.NewWorld(1), 0x0123456789AB))

	opts := scd4x.DefaultOpts
	opts.Altitude = 35 // metres above sea level
	dev, err := scd4x.New(bus, &opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Halt()
	m, err := dev.Sense(context.Background()) // the first value comes after about 5 s
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %d ppm CO2, %.1f °C\n", dev, m.CO2, m.Temperature.Celsius())
}
