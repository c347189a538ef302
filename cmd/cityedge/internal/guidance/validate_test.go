package guidance

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	base := func() Config {
		cfg := street(time.Second, 2, "z1", "z2")
		cfg.Sensors["weather"] = Sensor{Driver: "bme280", Interval: time.Minute}
		return cfg
	}
	cases := []struct {
		name   string
		change func(c *Config)
		key    string // "" for valid
		msg    string
	}{
		{"valid", func(c *Config) {}, "", ""},
		{"valid with everything", func(c *Config) {
			c.SmartDataModels, c.Site = true, "site-1"
			c.Zones[0].Category = []string{"onStreet", "blueZone"}
			c.Zones[0].Location = &Location{Point: [2]float64{-3.8, 43.46}}
			c.Zones[1].Site = "urn:ngsi-ld:OffStreetParking:x"
		}, "", ""},
		{"zone name with a space", func(c *Config) { c.Zones[1].Name = "z 2" }, "zones[1].name", `"z 2": use 1 to 64 letters`},
		{"zone name with a slash", func(c *Config) { c.Zones[1].Name = "a/b" }, "zones[1].name", "letters, digits"},
		{"empty zone name", func(c *Config) { c.Zones[0].Name = "" }, "zones[0].name", "use 1 to 64"},
		{"two zones of one name", func(c *Config) { c.Zones[1].Name = "z1" }, "zones[1].name", `zone "z1" is already zones[0]`},
		{"no bays", func(c *Config) { c.Zones[1].Bays = nil }, "zones[1].bays", "has no bays"},
		{"unknown sensor", func(c *Config) { c.Zones[1].Bays[1] = "z9-b0" }, "zones[1].bays[1]", `no sensor is named "z9-b0"`},
		{"not a parking sensor", func(c *Config) { c.Zones[0].Bays[0] = "weather" }, "zones[0].bays[0]", `sensor "weather" (bme280) does not report occupied`},
		{"listed twice", func(c *Config) { c.Zones[0].Bays[1] = "z1-b0" }, "zones[0].bays[1]", "listed twice (also bays[0])"},
		{"in two zones", func(c *Config) { c.Zones[1].Bays[0] = "z1-b1" }, "zones[1].bays[0]", `sensor "z1-b1" is already a bay of zone "z1" (zones[0])`},
		{"unknown category", func(c *Config) { c.Zones[0].Category = []string{"onStreet", "street"} }, "zones[0].category[1]", `"street" is not a ParkingGroup category`},
		{"empty category", func(c *Config) { c.Zones[0].Category = []string{} }, "zones[0].category", "empty"},
		{"category twice", func(c *Config) { c.Zones[0].Category = []string{"free", "free"} }, "zones[0].category[1]", "listed twice"},
		{"open polygon", func(c *Config) {
			c.Zones[1].Location = &Location{Ring: [][2]float64{{1, 1}, {2, 1}, {2, 2}, {1, 2}}}
		}, "zones[1].location", "not closed"},
		{"bad site", func(c *Config) { c.Zones[0].Site = "my site" }, "zones[0].site", "not an entity id"},
		{"bad agent site", func(c *Config) { c.Site = "a b" }, "agent.site", "not an entity id"},
		{"smart data models, a bay without location", func(c *Config) {
			c.SmartDataModels = true
			s := c.Sensors["z2-b1"]
			s.Location = nil
			c.Sensors["z2-b1"] = s
		}, "zones[1].bays[1]", `add location = [lon, lat] to sensor "z2-b1"`},
		{"a bay without location is fine without smart data models", func(c *Config) {
			s := c.Sensors["z2-b1"]
			s.Location = nil
			c.Sensors["z2-b1"] = s
		}, "", ""},
		{"a bay's location out of range", func(c *Config) {
			s := c.Sensors["z2-b1"]
			s.Location = &Location{Point: [2]float64{41.39, 200}}
			c.Sensors["z2-b1"] = s
		}, "zones[1].bays[1]", "latitude 200"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.change(&cfg)
			err := cfg.Check()
			wantField(t, err, tc.key, tc.msg)
		})
	}
}

func wantField(t *testing.T, err error, key, msg string) {
	t.Helper()
	if key == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want a FieldError at %s", err, err, key)
	}
	if fe.Key != key || !strings.Contains(fe.Msg, msg) {
		t.Fatalf("error at %q: %q; want at %q containing %q", fe.Key, fe.Msg, key, msg)
	}
}

func TestParseLocation(t *testing.T) {
	ring := []any{[]any{2.15, 41.39}, []any{2.151, 41.39}, []any{int64(2), int64(41)}, []any{2.15, 41.39}}
	cases := []struct {
		name  string
		v     any
		point bool // ParsePoint instead
		want  string
		key   string
		msg   string
	}{
		{"point", []any{2.15, 41.39}, false, `{"type":"Point","coordinates":[2.15,41.39]}`, "", ""},
		{"point of integers", []any{int64(2), int64(41)}, true, `{"type":"Point","coordinates":[2,41]}`, "", ""},
		{"point as floats", []float64{-3.8, 43.4}, true, `{"type":"Point","coordinates":[-3.8,43.4]}`, "", ""},
		{"polygon", ring, false, `{"type":"Polygon","coordinates":[[[2.15,41.39],[2.151,41.39],[2,41],[2.15,41.39]]]}`, "", ""},
		{"polygon where a point is wanted", ring, true, "", "k", "two numbers, not a list of 4"},
		{"open ring", ring[:3], false, "", "k", "at least 4 points"},
		{"ring not closed", append(append([]any{}, ring[:3]...), []any{9.0, 9.0}), false, "", "k", "not closed"},
		{"three numbers", []any{1.0, 2.0, 3.0}, false, "", "k", "two numbers, not a list of 3"},
		{"a string", "41.39,2.15", false, "", "k", "not a string"},
		{"lat lon swapped", []any{41.39, 100.0}, false, "", "k", "latitude 100"},
		{"longitude 181", []any{181.0, 0.0}, true, "", "k", "longitude 181"},
		{"a string in a point", []any{"2.15", 41.0}, true, "", "k", "element 0 is a string"},
		{"a bad point in a ring", []any{[]any{1.0, 1.0}, []any{2.0}, []any{2.0, 2.0}, []any{1.0, 1.0}}, false, "", "k[1]", "two numbers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parse := ParseLocation
			if tc.point {
				parse = ParsePoint
			}
			l, err := parse("k", tc.v)
			wantField(t, err, tc.key, tc.msg)
			if tc.key != "" {
				return
			}
			b, err := l.MarshalJSON()
			if err != nil || string(b) != tc.want {
				t.Errorf("GeoJSON %s, %v; want %s", b, err, tc.want)
			}
		})
	}
}

func TestCheckSigns(t *testing.T) {
	zones := []Zone{{Name: "z1"}, {Name: "z2"}}
	cases := []struct {
		name  string
		signs []Sign
		zones []Zone
		key   string
		msg   string
	}{
		{"valid", []Sign{{"corner", "z1"}, {"gate", "z2"}, {"lamp", "z1"}}, zones, "", ""},
		{"unknown zone", []Sign{{"corner", "z1"}, {"gate", "z3"}}, zones, "signs[1].zone", `sign "gate" shows zone "z3", which is not configured (zones: "z1", "z2")`},
		{"no zones", []Sign{{"corner", "z1"}}, nil, "signs[0].zone", "no zones are configured"},
		{"two signs of one name", []Sign{{"corner", "z1"}, {"corner", "z2"}}, zones, "signs[1].name", `sign "corner" is already signs[0]`},
		{"bad name", []Sign{{"the corner", "z1"}}, zones, "signs[0].name", "use 1 to 64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantField(t, CheckSigns(tc.signs, tc.zones), tc.key, tc.msg) })
	}
}

func TestCheckAddresses(t *testing.T) {
	cases := []struct {
		name string
		devs []BusDevice
		key  string
		msg  string
	}{
		{"different addresses", []BusDevice{{"sensors[0]", "air", "1", 0x76}, {"signs[0]", "corner", "1", 0x70}}, "", ""},
		{"same address, other bus", []BusDevice{{"signs[0]", "a", "1", 0x70}, {"signs[1]", "b", "0", 0x70}}, "", ""},
		{"same address", []BusDevice{{"sensors[0]", "air", "1", 0x76}, {"signs[0]", "corner", "1", 0x70}, {"signs[1]", "gate", "1", 0x70}},
			"signs[1].address", `"gate" at 0x70 on bus 1: "corner" (signs[0]) is already configured there`},
		{"one bus, two spellings", []BusDevice{{"sensors[2]", "mux", "/dev/i2c-1", 0x70}, {"signs[0]", "corner", "I2C1", 0x70}},
			"signs[0].address", `"mux" (sensors[2])`},
		{"the first bus", []BusDevice{{"signs[0]", "a", "", 0x70}, {"signs[1]", "b", "", 0x70}}, "signs[1].address", "(the first bus)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantField(t, CheckAddresses(tc.devs), tc.key, tc.msg) })
	}
}

func TestCheckSite(t *testing.T) {
	for _, s := range []string{"gw-7", "santander:daoiz_velarde_1_5", "urn:ngsi-ld:OnStreetParking:x", "https://city.example/parking/7"} {
		if err := CheckSite("k", s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "a b", "ü", strings.Repeat("a", 257)} {
		if err := CheckSite("k", s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cfg := street(time.Second, 1, "z1")
	if _, err := New(cfg, nil, nil); err == nil {
		t.Error("New without a clock")
	}
	cfg.Zones[0].Bays = append(cfg.Zones[0].Bays, "ghost")
	if _, err := New(cfg, clockworkFake(), nil); err == nil || !strings.Contains(err.Error(), `zones[0].bays[1]: no sensor is named "ghost"`) {
		t.Errorf("New with an unknown bay: %v", err)
	}
}
