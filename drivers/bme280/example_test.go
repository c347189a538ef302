package bme280_test

import (
	"context"
	"fmt"

	"github.com/cityedge/cityedge/drivers/bme280"
	"github.com/cityedge/cityedge/drivers/bme280/bme280sim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func Example() {
	// On a gateway the bus comes from i2creg.Open("1") after host.Init().
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x76, bme280sim.NewSim(sim.NewWorld(1), bme280sim.BME280))

	dev, err := bme280.New(bus, &bme280.DefaultOpts)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := dev.Sense(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %.1f °C, %.0f Pa, %.0f %%RH\n", dev, m.Temperature.Celsius(), float64(m.Pressure)/1e9, float64(m.Humidity)/1e5)
}
