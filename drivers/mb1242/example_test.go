package mb1242_test

import (
	"context"
	"fmt"
	"log"

	"github.com/cityedge/cityedge/drivers/mb1242"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// An overhead ranger at the factory address on the first I2C bus.
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	bus, err := i2creg.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	dev, err := mb1242.New(bus, &mb1242.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	d, err := dev.Sense(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("distance:", d)
}
