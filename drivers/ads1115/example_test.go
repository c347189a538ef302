package ads1115_test

import (
	"context"
	"fmt"
	"log"

	"github.com/cityedge/cityedge/drivers/ads1115"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// A noise meter's 0.4–2.0 V output on AIN0 of an ADS1115 with ADDR to GND.
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	bus, err := i2creg.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	adc, err := ads1115.New(bus, &ads1115.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	v, err := adc.Sense(context.Background(), 0, ads1115.FSR4096mV)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("AIN0:", v)
}
