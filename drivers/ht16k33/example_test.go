package ht16k33_test

import (
	"log"

	"github.com/cityedge/cityedge/drivers/ht16k33"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// A 4-digit parking sign at 0x70 on the first I2C bus showing 12 free bays.
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	bus, err := i2creg.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	sign, err := ht16k33.New(bus, &ht16k33.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	if err := sign.Show("12"); err != nil {
		log.Fatal(err)
	}
}
