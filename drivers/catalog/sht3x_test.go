package catalog

import (
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sht3x/sht3xsim"
	"github.com/cityedge/cityedge/drivers/sim"
)

func TestSHT3xEntry(t *testing.T) {
	d := lookup(t, "sht3x")
	if d.Kind != I2C || len(d.Addrs) != 2 || d.Addrs[0] != 0x44 || d.Addrs[1] != 0x45 || d.SimChip == nil || d.Options == nil || d.Options() != nil {
		t.Fatalf("entry %+v", d)
	}
	if _, err := decodeOpts(t, d, "repeatability = \"high\""); err == nil {
		t.Error("sht3x accepted an option it does not have")
	}
}

func TestSHT3xOpenRead(t *testing.T) {
	d := lookup(t, "sht3x")
	world := sim.NewWorld(5)
	vals, err := envOpenRead(t, "sht3x", d.SimChip(SimSpec{Sensor: "env-1", Addr: 0x45, World: world, Seed: 42}, nil), 0x45, nil)
	if err != nil {
		t.Fatal(err)
	}
	envCheckValues(t, vals, []envWant{
		{drivers.Temperature, drivers.UnitCelsius, -10, 40},
		{drivers.Humidity, drivers.UnitPercentRH, 5, 100},
	})

	_, err = envOpenRead(t, "sht3x", nil, 0x44, nil)
	if err == nil || !strings.Contains(err.Error(), "bus 1 address 0x44: sht3x: read status") {
		t.Fatalf("Open with nothing at the address: %v", err)
	}
	_, err = envOpenRead(t, "sht3x", sht3xsim.NewSim(world, 7), 0x44, nil)
	if err != nil {
		t.Fatalf("second chip: %v", err)
	}
}
