package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/sim"
	"github.com/cityedge/cityedge/drivers/sps30/sps30sim"
)

func TestSPS30Options(t *testing.T) {
	d := lookup(t, "sps30")
	if d.Kind != I2C || len(d.Addrs) != 1 || d.Addrs[0] != 0x69 || d.SimChip == nil {
		t.Fatalf("entry %+v", d)
	}
	for _, tc := range []struct {
		src  string
		want time.Duration
		err  string
	}{
		{src: "", want: 168 * time.Hour},
		{src: `fan_cleaning_interval = "72h"`, want: 72 * time.Hour},
		{src: `fan_cleaning_interval = "0s"`, want: 0},
		{src: `fan_cleaning_interval = "1500ms"`, err: "fan_cleaning_interval = \"1.5s\""},
		{src: `fan_cleaning_interval = "-1h"`, err: "fan_cleaning_interval"},
		{src: `fan_cleaning_interval = "a week"`, err: "*"},
		{src: `cleaning = "72h"`, err: "*"},
	} {
		opts, err := decodeOpts(t, d, tc.src)
		if optsErr(t, tc.src, err, tc.err) {
			continue
		}
		if got := opts.(*sps30Options).FanCleaningInterval.D(); got != tc.want {
			t.Errorf("%q: interval %v, want %v", tc.src, got, tc.want)
		}
	}
}

// TestSPS30OpenRead runs in real time (reset 100 ms, first data after 1 s).
func TestSPS30OpenRead(t *testing.T) {
	t.Parallel()
	d := lookup(t, "sps30")
	chip := d.SimChip(SimSpec{Sensor: "pm-1", Addr: 0x69, World: sim.NewWorld(4), Seed: 0xABCDEF}, nil).(*sps30sim.Sim)
	vals, err := envOpenRead(t, "sps30", chip, 0x69, &sps30Options{FanCleaningInterval: Duration(96 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	envCheckValues(t, vals, []envWant{
		{drivers.PM1, drivers.UnitUgM3, 0, 100},
		{drivers.PM2_5, drivers.UnitUgM3, 0, 100},
		{drivers.PM4, drivers.UnitUgM3, 0, 100},
		{drivers.PM10, drivers.UnitUgM3, 0, 100},
	})
	for _, v := range vals {
		if !v.Float32 || float64(float32(v.Num)) != v.Num {
			t.Errorf("%s = %v (Float32 %t): the chip's float32 must stay a float32", v.Quantity, v.Num, v.Float32)
		}
	}
	if iv, writes := chip.CleaningInterval(); iv != 96*time.Hour || writes != 1 {
		t.Errorf("sensor cleaning interval %v after %d writes", iv, writes)
	}
	if chip.Measuring() {
		t.Error("Halt left the fan running")
	}
	_, err = envOpenRead(t, "sps30", nil, 0x69, &sps30Options{})
	if err == nil || !strings.Contains(err.Error(), "bus 1 address 0x69: sps30: device reset") {
		t.Fatalf("Open with nothing at the address: %v", err)
	}
}
