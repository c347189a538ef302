package gpiopresence_test

import (
	"context"
	"fmt"
	"log"

	"github.com/cityedge/cityedge/drivers/gpiopresence"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
)

// A loop detector's relay contact between GPIO17 and ground: active low,
// pulled up, 200 ms debounce (DefaultOpts).
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	pin := gpioreg.ByName("GPIO17")
	if pin == nil {
		log.Fatal("no pin GPIO17 on this host")
	}
	dev, err := gpiopresence.New(pin, &gpiopresence.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Halt()
	err = dev.Watch(context.Background(), func(occupied bool) { fmt.Println("occupied:", occupied) })
	log.Fatal(err)
}
