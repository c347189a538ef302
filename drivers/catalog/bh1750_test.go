package catalog

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/internal/drivertest"
	"github.com/cityedge/cityedge/drivers/sim"
)

func TestBH1750Options(t *testing.T) {
	d := lookup(t, "bh1750")
	if d.Kind != I2C || len(d.Addrs) != 2 || d.Addrs[0] != 0x23 || d.Addrs[1] != 0x5C || d.SimChip == nil {
		t.Fatalf("bh1750 registered as %+v", d)
	}
	cases := []struct {
		src     string
		want    int
		wantErr string
	}{
		{"", 69, ""},
		{"mtreg = 31", 31, ""},
		{"mtreg = 254", 254, ""},
		{"mtreg = 30", 0, "mtreg = 30: want 31 to 254"},
		{"mtreg = 255", 0, "mtreg = 255"},
		{"mtreg = -1", 0, "mtreg = -1"},
		{"mtreg = 69.5", 0, "cannot decode TOML float"},
		{"gain = 2", 0, "strict mode"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			opts, err := decodeOpts(t, d, tc.src)
			if drivertest.WantErr(t, "decode", err, tc.wantErr) {
				return
			}
			if got := opts.(*lightOpts).MTreg; got != tc.want {
				t.Errorf("mtreg %d, want %d", got, tc.want)
			}
		})
	}
}

func TestBH1750Simulated(t *testing.T) {
	d := lookup(t, "bh1750")
	bus := sim.NewBus("sim-i2c1")
	bus.Attach(0x5C, d.SimChip(SimSpec{Sensor: "light", Addr: 0x5C, World: sim.NewWorld(1)}, d.Options()))
	s, err := d.Open(Target{Sensor: "light", Bus: bus, BusName: "1", Addr: 0x5C}, d.Options())
	if err != nil {
		t.Fatal(err)
	}
	vals, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The simulated street is between 20 lx (night) and 30 000 lx (noon).
	if len(vals) != 1 || vals[0].Quantity != drivers.Illuminance || vals[0].Unit != drivers.UnitLux || vals[0].Num < 15 || vals[0].Num > 31000 {
		t.Errorf("Read() = %+v at %s, want a street illuminance in lx", vals, time.Now().UTC().Format(time.Kitchen))
	}
	if err := s.Halt(); err != nil {
		t.Fatal(err)
	}
	bus.Fail(0x5C, sim.ErrNACK)
	if _, err := d.Open(Target{Sensor: "light", Bus: bus, BusName: "1", Addr: 0x5C}, nil); err == nil || !strings.Contains(err.Error(), "bus 1 address 0x5c: bh1750: power on") {
		t.Errorf("Open on a silent address: %v", err)
	}
}
