package config

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/drivers/sim"
	"periph.io/x/conn/v3/gpio"
)

// guidanceBase is validConfig plus parking sensors with locations and one
// zone; cases append to it.
func guidanceBase(t *testing.T, dir string) string {
	return validConfig(t, dir) + `
[[sensors]]
name = "bay-18"
driver = "qmc5883l"
bus = "1"
location = [2.1701, 41.3870]

[[sensors]]
name = "bay-19"
driver = "mb1242"
bus = "1"
location = [2.1702, 41.3871]

[[zones]]
name = "north"
bays = ["bay-18", "bay-19"]
`
}

func TestGuidanceValid(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parse(t, dir, guidanceBase(t, dir)+`
[[zones]]
name = "south"
bays = ["bay-17"]
category = ["offStreet", "feeCharged"]
site = "urn:ngsi-ld:OffStreetParking:demo:south"
location = [[2.0, 41.0], [2.1, 41.0], [2.1, 41.1], [2.0, 41.0]]

[[signs]]
name = "corner"
zone = "north"
driver = "ht16k33"
bus = "I2C1"
address = 0x71
brightness = 3

[[signs]]
name = "south-full"
zone = "south"
driver = "gpio-lamp"
pin = "GPIO22"
active = "low"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Guidance.PublishBays || cfg.Guidance.SmartDataModels {
		t.Errorf("guidance defaults = %+v, want publish_bays true, smart_data_models false", cfg.Guidance)
	}
	if len(cfg.Zones) != 2 || cfg.Zones[1].Site != "urn:ngsi-ld:OffStreetParking:demo:south" || len(cfg.Zones[1].Location.Ring) != 4 ||
		!slices.Equal(cfg.Zones[1].Category, []string{"offStreet", "feeCharged"}) || cfg.Zones[0].Category != nil {
		t.Errorf("zones = %+v", cfg.Zones)
	}
	want := []SignConfig{
		{Name: "corner", Zone: "north", Driver: SignHT16K33, Bus: "I2C1", Address: 0x71, Brightness: 3},
		{Name: "south-full", Zone: "south", Driver: SignGPIOLamp, Pin: "GPIO22", Active: gpio.Low},
	}
	if !slices.Equal(cfg.Signs, want) {
		t.Errorf("signs = %+v, want %+v", cfg.Signs, want)
	}
	if l := cfg.Sensors[2].Location; l == nil || l.Point != [2]float64{2.1701, 41.3870} {
		t.Errorf("bay-18 location = %+v", l)
	}
	g := cfg.GuidanceModel()
	if !g.Sensors["bay-17"].Parking || g.Sensors["air-1"].Parking || g.Sensors["bay-18"].Interval != defaultI2CInterval {
		t.Errorf("guidance model sensors = %+v", g.Sensors)
	}

	// Defaults of a sign, and [guidance] set explicitly.
	cfg, err = parse(t, dir, guidanceBase(t, dir)+`
[guidance]
publish_bays = false
smart_data_models = true

[[signs]]
name = "s"
zone = "north"
driver = "ht16k33"
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Guidance.PublishBays || !cfg.Guidance.SmartDataModels {
		t.Errorf("guidance = %+v", cfg.Guidance)
	}
	if s := cfg.Signs[0]; s.Address != 0x70 || s.Brightness != 8 || s.Bus != "" {
		t.Errorf("sign defaults = %+v, want address 0x70, brightness 8", s)
	}
	// No zones at all: the agent runs as before.
	cfg, err = parse(t, dir, validConfig(t, dir))
	if err != nil || len(cfg.Zones) != 0 || len(cfg.Signs) != 0 || !cfg.Guidance.PublishBays {
		t.Errorf("without zones: %+v, %v", cfg, err)
	}
}

// Every bad input exits 2 with file:line:key: the error names the line
// holding `at` and the key.
func TestGuidanceBad(t *testing.T) {
	for _, tc := range []struct {
		name, add  string
		at, key    string // the line holding at; the key named
		msg        string
		noBaseZone bool
	}{
		{name: "unknown sensor", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-17\", \"bay-99\"]\n",
			at: `bays = ["bay-17", "bay-99"]`, key: "zones[1].bays[1]", msg: `no sensor is named "bay-99"`},
		{name: "non-parking sensor", add: "[[zones]]\nname = \"z2\"\nbays = [\"air-1\"]\n",
			at: `bays = ["air-1"]`, key: "zones[1].bays[0]", msg: "does not report occupied"},
		{name: "bay in two zones", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-18\"]\n",
			at: `bays = ["bay-18"]`, key: "zones[1].bays[0]", msg: `already a bay of zone "north"`},
		{name: "bay twice in a zone", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-17\", \"bay-17\"]\n",
			at: `bays = ["bay-17", "bay-17"]`, key: "zones[1].bays[1]", msg: "listed twice"},
		{name: "duplicate zone", add: "[[zones]]\nname = \"north\"\nbays = [\"bay-17\"]\n",
			at: `name = "north"`, key: "zones[1].name", msg: "already zones[0]"},
		{name: "bad zone name", add: "[[zones]]\nname = \"a b\"\nbays = [\"bay-17\"]\n",
			at: `name = "a b"`, key: "zones[1].name", msg: "letters, digits"},
		{name: "zone without bays", add: "[[zones]]\nname = \"z2\"\n",
			at: `[[zones]]`, key: "zones[1].bays", msg: "no bays"},
		{name: "unknown zone key", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-17\"]\nspots = 3\n",
			at: `spots = 3`, key: "zones[1].spots", msg: "unknown key"},
		{name: "bad category", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-17\"]\ncategory = [\"onStreet\", \"street\"]\n",
			at: `category = ["onStreet", "street"]`, key: "zones[1].category[1]", msg: "not a ParkingGroup category"},
		{name: "polygon not closed", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-17\"]\nlocation = [[2.0, 41.0], [2.1, 41.0], [2.1, 41.1], [2.0, 41.1]]\n",
			at: `location = [[2.0, 41.0]`, key: "zones[1].location", msg: "not closed"},
		{name: "point out of range", add: "[[zones]]\nname = \"z2\"\nbays = [\"bay-17\"]\nlocation = [41.38, 200.0]\n",
			at: `location = [41.38, 200.0]`, key: "zones[1].location", msg: "latitude 200"},
		{name: "sensor location not a point", add: "[[sensors]]\nname = \"bay-20\"\ndriver = \"gpio-presence\"\npin = \"GPIO20\"\nlocation = \"here\"\n",
			at: `location = "here"`, key: "sensors[4].location", msg: "want [lon, lat]"},
		{name: "location on a non-parking sensor", add: "[[sensors]]\nname = \"air-2\"\ndriver = \"sht3x\"\nbus = \"1\"\nlocation = [2.1, 41.3]\n",
			at: `location = [2.1, 41.3]`, key: "sensors[4].location", msg: "for parking sensors"},
		{name: "smart data models without bay location", add: "[guidance]\nsmart_data_models = true\n[[zones]]\nname = \"z2\"\nbays = [\"bay-17\"]\n",
			at: `bays = ["bay-17"]`, key: "zones[1].bays[0]", msg: "needs a location for every bay"},
		{name: "publish_bays not a boolean", add: "[guidance]\npublish_bays = \"no\"\n",
			at: `publish_bays = "no"`, key: "guidance.publish_bays", msg: ""},
		{name: "unknown guidance key", add: "[guidance]\npublish_zones = true\n",
			at: `publish_zones = true`, key: "guidance.publish_zones", msg: "unknown key"},
		{name: "sign for unknown zone", add: "[[signs]]\nname = \"s\"\nzone = \"south\"\ndriver = \"ht16k33\"\n",
			at: `zone = "south"`, key: "signs[0].zone", msg: `zone "south", which is not configured`},
		{name: "sign driver unknown", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"max7219\"\n",
			at: `driver = "max7219"`, key: "signs[0].driver", msg: "use \"ht16k33\""},
		{name: "sign without name", add: "[[signs]]\nzone = \"north\"\ndriver = \"ht16k33\"\n",
			at: `[[signs]]`, key: "signs[0].name", msg: "required"},
		{name: "duplicate sign", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"ht16k33\"\n[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"ht16k33\"\naddress = 0x72\n",
			at: `name = "s"`, key: "signs[1].name", msg: "already signs[0]"},
		{name: "sign address out of range", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"ht16k33\"\naddress = 0x60\n",
			at: `address = 0x60`, key: "signs[0].address", msg: "0x70 to 0x77"},
		{name: "sign brightness", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"ht16k33\"\nbrightness = 16\n",
			at: `brightness = 16`, key: "signs[0].brightness", msg: "want 0 to 15"},
		{name: "pin on a display", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"ht16k33\"\npin = \"GPIO5\"\n",
			at: `pin = "GPIO5"`, key: "signs[0].pin", msg: "unknown key"},
		{name: "lamp without pin", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"gpio-lamp\"\n",
			at: `[[signs]]`, key: "signs[0].pin", msg: "required"},
		{name: "lamp active", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"gpio-lamp\"\npin = \"GPIO5\"\nactive = \"on\"\n",
			at: `active = "on"`, key: "signs[0].active", msg: "high"},
		{name: "lamp on a sensor's pin", add: "[[signs]]\nname = \"s\"\nzone = \"north\"\ndriver = \"gpio-lamp\"\npin = \"GPIO17\"\n",
			at: `pin = "GPIO17"`, key: "signs[0].pin", msg: `sensor "bay-17"`},
		{name: "two signs at one address", add: "[[signs]]\nname = \"a\"\nzone = \"north\"\ndriver = \"ht16k33\"\nbus = \"3\"\n[[signs]]\nname = \"b\"\nzone = \"north\"\ndriver = \"ht16k33\"\nbus = \"/dev/i2c-3\"\naddress = 0x70\n",
			at: `address = 0x70`, key: "signs[1].address", msg: `"a" (signs[0]) is already configured there`},
		{name: "sign at a sensor's address", add: "[[sensors]]\nname = \"bay-20\"\ndriver = \"mb1242\"\nbus = \"2\"\naddress = 0x70\n[[signs]]\nname = \"a\"\nzone = \"north\"\ndriver = \"ht16k33\"\nbus = \"I2C2\"\n",
			at: `[[signs]]`, key: "signs[0].address", msg: `"bay-20" (sensors[4]) is already configured there`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := guidanceBase(t, dir) + tc.add
			_, err := parse(t, dir, text)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v, want a *ConfigError", err)
			}
			line := 0
			if i := strings.LastIndex(text, tc.at); i >= 0 {
				line = strings.Count(text[:i], "\n") + 1
			}
			file := filepath.Join(dir, "cityedge.toml")
			prefix := fmt.Sprintf("%s:%d: %s: ", file, line, tc.key)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error = %q\nwant it to start %q and contain %q", err, prefix, tc.msg)
			}
		})
	}
}

// ParkingDrivers is exactly the set of catalog drivers whose simulated
// sensor reports `occupied` with its default options.
func TestParkingDrivers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, name := range catalog.Names() {
		d, _ := catalog.Lookup(name)
		var opts any
		if d.Options != nil {
			opts = d.Options()
		}
		spec := catalog.SimSpec{Sensor: name, World: sim.NewWorld(1), Bay: sim.NewBay(2, time.Second), Seed: 3}
		tgt := catalog.Target{Sensor: name}
		switch d.Kind {
		case catalog.I2C:
			bus := sim.NewBus("sim")
			spec.Addr, tgt.Addr, tgt.Bus = d.Addrs[0], d.Addrs[0], bus
			bus.Attach(d.Addrs[0], d.SimChip(spec, opts))
		case catalog.GPIO:
			tgt.Pin = d.SimPin(ctx, spec, opts)
		}
		reports := false
		s, err := d.Open(tgt, opts)
		if err != nil {
			t.Logf("%s: cannot open with default options (%v): it cannot report anything", name, err)
		} else {
			// A detector may need some reads to learn its baseline; a slow
			// chip (scd4x: 5 s a measurement) is asked only until it
			// answered once.
			start := time.Now()
			for i := 0; i < 40 && !reports; i++ {
				vals, err := s.Read(ctx)
				if err != nil {
					t.Fatalf("%s: read: %v", name, err)
				}
				reports = slices.ContainsFunc(vals, func(v drivers.Value) bool { return v.Quantity == drivers.Occupied && v.IsBool })
				if len(vals) > 0 && time.Since(start) > 2*time.Second {
					break
				}
			}
			s.Halt()
		}
		if reports != IsParking(name) {
			t.Errorf("driver %s reports occupied: %v; ParkingDrivers says %v", name, reports, IsParking(name))
		}
	}
}
