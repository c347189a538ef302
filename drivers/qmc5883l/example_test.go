package qmc5883l_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cityedge/cityedge/drivers/qmc5883l"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"
)

// An in-ground sensor on the first I2C bus, reporting occupancy once a
// second after it has learned the empty bay.
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	bus, err := i2creg.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	dev, err := qmc5883l.New(bus, &qmc5883l.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Halt()
	det, err := qmc5883l.NewDetector(qmc5883l.DefaultDetectorOpts)
	if err != nil {
		log.Fatal(err)
	}
	for range time.Tick(time.Second) {
		f, err := dev.Sense(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		if occupied, ready := det.Update(time.Now(), f); ready {
			fmt.Println(f, "occupied:", occupied)
		}
	}
}
