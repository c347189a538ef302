package gpiolamp_test

import (
	"log"

	"github.com/cityedge/cityedge/drivers/gpiolamp"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
)

// A "FULL" lamp on a relay module wired to GPIO22, active high.
func Example() {
	if _, err := host.Init(); err != nil {
		log.Fatal(err)
	}
	pin := gpioreg.ByName("GPIO22")
	if pin == nil {
		log.Fatal("no GPIO22 on this host")
	}
	lamp, err := gpiolamp.New(pin, &gpiolamp.DefaultOpts)
	if err != nil {
		log.Fatal(err)
	}
	if err := lamp.Set(true); err != nil {
		log.Fatal(err)
	}
}
