package bh1750_test

import (
	"context"
	"fmt"
	"log"

	"github.com/cityedge/cityedge/drivers/bh1750"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// A light sensor with ADDR low (0x23) on the first I2C bus.
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	bus, err := i2creg.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	dev, err := bh1750.New(bus, &bh1750.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	lx, err := dev.Sense(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("illuminance:", lx)
}
