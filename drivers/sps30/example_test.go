package sps30_test

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/cityedge/cityedge/drivers/sps30"
	"github.com/cityedge/cityedge/drivers/sps30/sps30sim"
)

func Example() {
	// On a gateway the bus comes from i2creg.Open("1") after host.Init().
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x69, sps30sim.NewSim(sim.NewWorld(1), "EXAMPLE0001"))

	dev, err := sps30.New(bus, &sps30.DefaultOpts) // starts the fan
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Halt()
	m, err := dev.Sense(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: PM2.5 %.1f µg/m³, PM10 %.1f µg/m³\n", dev, m.MassPM2_5, m.MassPM10)
}
