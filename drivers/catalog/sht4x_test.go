package catalog

import (
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sht3x/sht3xsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func TestSHT4xEntry(t *testing.T) {
	d := lookup(t, "sht4x")
	if d.Kind != I2C || len(d.Addrs) != 3 || d.Addrs[0] != 0x44 || d.SimChip == nil || d.Options == nil || d.Options() != nil {
		t.Fatalf("entry %+v", d)
	}
	if _, err := decodeOpts(t, d, "heater = true"); err == nil {
		t.Error("sht4x accepted an option it does not have")
	}
}

func TestSHT4xOpenRead(t *testing.T) {
	d := lookup(t, "sht4x")
	world := sim.NewWorld(6)
	vals, err := envOpenRead(t, "sht4x", d.SimChip(SimSpec{Sensor: "env-1", Addr: 0x44, World: world, Seed: 9}, nil), 0x44, nil)
	if err != nil {
		t.Fatal(err)
	}
	envCheckValues(t, vals, []envWant{
		{drivers.Temperature, drivers.UnitCelsius, -10, 40},
		{drivers.Humidity, drivers.UnitPercentRH, 5, 100},
	})
	// An SHT3x where an SHT4x is configured does not know the one-byte
	// serial number command.
	_, err = envOpenRead(t, "sht4x", sht3xsim.NewSim(world, 1), 0x44, nil)
	if err == nil || !strings.Contains(err.Error(), "bus 1 address 0x44: sht4x: read serial number") {
		t.Fatalf("Open on an SHT3x: %v", err)
	}
}
