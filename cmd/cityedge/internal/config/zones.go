package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/drivers/gpiolamp"
	"github.com/cityedge/cityedge/drivers/ht16k33"
	"periph.io/x/conn/v3/gpio"
)

// GuidanceConfig is the [guidance] table: what parking guidance sends.
type GuidanceConfig struct {
	// PublishBays = false keeps per-bay occupancy on the gateway: only zone
	// counts leave it (docs/PRIVACY.md). Default true.
	PublishBays bool `toml:"publish_bays"`
	// SmartDataModels publishes the FIWARE ParkingGroup and ParkingSpot
	// documents beside the zone messages. Default false.
	SmartDataModels bool `toml:"smart_data_models"`
}

// Sign drivers.
const (
	SignHT16K33  = "ht16k33"
	SignGPIOLamp = "gpio-lamp"
)

// SignConfig is one [[signs]] table: a display or lamp showing a zone.
type SignConfig struct {
	Name   string
	Zone   string
	Driver string // SignHT16K33 or SignGPIOLamp

	// ht16k33
	Bus        string
	Address    uint16
	Brightness int

	// gpio-lamp
	Pin    string
	Active gpio.Level
}

// ParkingDrivers are the catalog drivers that report `occupied`: the only
// sensors that can be bays of a zone (a test checks this list against what
// each simulated driver actually reports).
var ParkingDrivers = []string{"gpio-presence", "mb1242", "qmc5883l"}

// IsParking reports whether a driver reports `occupied`.
func IsParking(driver string) bool { return slices.Contains(ParkingDrivers, driver) }

// GuidanceModel returns what the guidance model is built from.
func (c *Config) GuidanceModel() guidance.Config {
	g := guidance.Config{AgentID: c.Agent.ID, Site: c.Agent.Site, SmartDataModels: c.Guidance.SmartDataModels,
		Zones: c.Zones, Sensors: map[string]guidance.Sensor{}}
	for _, s := range c.Sensors {
		g.Sensors[s.Name] = guidance.Sensor{Driver: s.Driver, Parking: IsParking(s.Driver), Interval: s.Interval, Location: s.Location}
	}
	return g
}

// lineOf finds the line of key, or of the nearest enclosing key the index
// knows ("zones[1].bays[2]" → "zones[1].bays" → "zones[1]").
func (k keyIndex) lineOf(key string) int {
	for key != "" {
		if n, ok := k[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i <= 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// parseGuidance reads [guidance], [[zones]], [[signs]] and the sensors'
// location keys, and checks them against the sensors: every problem is a
// *ConfigError naming file, line and key.
func (c *Config) parseGuidance(raw map[string]any, sensors, zones, signs []map[string]any) error {
	fail := func(key, format string, args ...any) error {
		return &ConfigError{File: c.path, Line: c.pos.lineOf(key), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	keyed := func(err error) error {
		var fe *guidance.FieldError
		if errors.As(err, &fe) {
			return fail(fe.Key, "%s", fe.Msg)
		}
		return err
	}
	if g, _ := raw["guidance"].(map[string]any); g != nil {
		if _, set := g["publish_bays"]; !set {
			c.Guidance.PublishBays = true
		}
	} else {
		c.Guidance.PublishBays = true
	}

	for i, s := range sensors {
		v, ok := s["location"]
		if !ok {
			continue
		}
		key := fmt.Sprintf("sensors[%d].location", i)
		if !IsParking(c.Sensors[i].Driver) {
			return fail(key, "sensor %q: location is for parking sensors (%s); driver %s is not one", c.Sensors[i].Name, strings.Join(ParkingDrivers, ", "), c.Sensors[i].Driver)
		}
		loc, err := guidance.ParsePoint(key, v)
		if err != nil {
			return keyed(err)
		}
		c.Sensors[i].Location = loc
	}

	for i, z := range zones {
		zc, err := parseZone(i, z, fail)
		if err != nil {
			return keyed(err)
		}
		c.Zones = append(c.Zones, zc)
	}
	model := c.GuidanceModel()
	if err := model.Check(); err != nil {
		return keyed(err)
	}

	var checks []guidance.Sign
	for i, s := range signs {
		sc, err := parseSign(i, s, fail)
		if err != nil {
			return keyed(err)
		}
		c.Signs = append(c.Signs, sc)
		checks = append(checks, guidance.Sign{Name: sc.Name, Zone: sc.Zone})
	}
	if err := guidance.CheckSigns(checks, c.Zones); err != nil {
		return keyed(err)
	}

	// Two chips cannot answer at one bus address, nor two outputs drive one
	// line: sensors and signs together.
	var devs []guidance.BusDevice
	pins := map[string]string{}
	for i, s := range c.Sensors {
		if d, _ := catalog.Lookup(s.Driver); d.Kind == catalog.I2C {
			devs = append(devs, guidance.BusDevice{Key: fmt.Sprintf("sensors[%d]", i), Name: s.Name, Bus: s.Bus, Addr: s.Address})
		} else if s.Pin != "" {
			pins[s.Pin] = fmt.Sprintf("sensor %q (sensors[%d])", s.Name, i)
		}
	}
	for i, s := range c.Signs {
		switch s.Driver {
		case SignHT16K33:
			devs = append(devs, guidance.BusDevice{Key: fmt.Sprintf("signs[%d]", i), Name: s.Name, Bus: s.Bus, Addr: s.Address})
		case SignGPIOLamp:
			key := fmt.Sprintf("signs[%d].pin", i)
			if other, dup := pins[s.Pin]; dup {
				return fail(key, "sign %q: pin %q is already used by %s", s.Name, s.Pin, other)
			}
			pins[s.Pin] = fmt.Sprintf("sign %q (signs[%d])", s.Name, i)
		}
	}
	return keyed(guidance.CheckAddresses(devs))
}

var zoneKeys = []string{"name", "bays", "category", "location", "site"}

func parseZone(i int, raw map[string]any, fail func(key, format string, args ...any) error) (guidance.Zone, error) {
	key := func(k string) string { return fmt.Sprintf("zones[%d].%s", i, k) }
	var z guidance.Zone
	for k := range raw {
		if !slices.Contains(zoneKeys, k) {
			return z, fail(key(k), "unknown key %q in a [[zones]] table (it takes: %s)", k, strings.Join(zoneKeys, ", "))
		}
	}
	var err error
	if z.Name, err = strField(raw, "name", key, fail); err != nil {
		return z, err
	}
	if z.Name == "" {
		return z, fail(key("name"), "required: the zone's name (letters, digits, '-' or '_'), e.g. \"block-3\"")
	}
	if z.Site, err = strField(raw, "site", key, fail); err != nil {
		return z, err
	}
	if _, has := raw["site"]; has && z.Site == "" {
		return z, fail(key("site"), "empty: leave the key out for agent.site (or agent.id)")
	}
	if z.Bays, err = strList(raw, "bays", key, fail); err != nil {
		return z, err
	}
	if _, has := raw["category"]; has {
		if z.Category, err = strList(raw, "category", key, fail); err != nil {
			return z, err
		}
		if z.Category == nil {
			z.Category = []string{} // present but empty: guidance.CheckCategory says so
		}
	}
	if v, has := raw["location"]; has {
		if z.Location, err = guidance.ParseLocation(key("location"), v); err != nil {
			return z, err
		}
	}
	return z, nil
}

var signKeys = map[string][]string{
	SignHT16K33:  {"name", "zone", "driver", "bus", "address", "brightness"},
	SignGPIOLamp: {"name", "zone", "driver", "pin", "active"},
}

func parseSign(i int, raw map[string]any, fail func(key, format string, args ...any) error) (SignConfig, error) {
	key := func(k string) string { return fmt.Sprintf("signs[%d].%s", i, k) }
	var s SignConfig
	var err error
	if s.Name, err = strField(raw, "name", key, fail); err != nil {
		return s, err
	}
	if s.Name == "" {
		return s, fail(key("name"), "required: the sign's name (letters, digits, '-' or '_'), e.g. \"corner-north\"")
	}
	if err := guidance.CheckName(key("name"), s.Name); err != nil {
		return s, err
	}
	if s.Zone, err = strField(raw, "zone", key, fail); err != nil {
		return s, err
	}
	if s.Driver, err = strField(raw, "driver", key, fail); err != nil {
		return s, err
	}
	allowed, ok := signKeys[s.Driver]
	if !ok {
		return s, fail(key("driver"), "sign %q: driver %q: use %q (4-digit LED display on I2C) or %q (a lamp on a GPIO line)", s.Name, s.Driver, SignHT16K33, SignGPIOLamp)
	}
	for k := range raw {
		if !slices.Contains(allowed, k) {
			return s, fail(key(k), "sign %q: unknown key %q for driver %s (it takes: %s)", s.Name, k, s.Driver, strings.Join(allowed, ", "))
		}
	}
	switch s.Driver {
	case SignHT16K33:
		if s.Bus, err = strField(raw, "bus", key, fail); err != nil {
			return s, err
		}
		opts := ht16k33.DefaultOpts
		for _, k := range []string{"address", "brightness"} {
			v, has := raw[k]
			if !has {
				continue
			}
			n, ok := v.(int64)
			if !ok {
				return s, fail(key(k), "sign %q: must be an integer, not %s", s.Name, tomlType(v))
			}
			if k == "address" {
				if n < 0 || n > 0x7f {
					return s, fail(key(k), "sign %q: %#x is not a 7-bit device address", s.Name, n)
				}
				opts.Addr = uint16(n)
			} else {
				if n < 0 || n > ht16k33.BrightnessMax {
					return s, fail(key(k), "sign %q: brightness = %d: want 0 to %d (default %d)", s.Name, n, ht16k33.BrightnessMax, ht16k33.DefaultOpts.Brightness)
				}
				opts.Brightness = int(n)
			}
		}
		if err := opts.Validate(); err != nil {
			k, _, _ := strings.Cut(err.Error(), " =")
			return s, fail(key(k), "sign %q: %v", s.Name, err)
		}
		s.Address, s.Brightness = opts.Addr, opts.Brightness
	case SignGPIOLamp:
		if s.Pin, err = strField(raw, "pin", key, fail); err != nil {
			return s, err
		}
		if s.Pin == "" {
			return s, fail(key("pin"), "sign %q: required: the GPIO line that drives the lamp (e.g. \"GPIO22\")", s.Name)
		}
		s.Active = gpiolamp.DefaultOpts.Active
		if _, has := raw["active"]; has {
			a, err := strField(raw, "active", key, fail)
			if err != nil {
				return s, err
			}
			if s.Active, err = gpiolamp.ParseActive(a); err != nil {
				return s, fail(key("active"), "sign %q: %v", s.Name, err)
			}
		}
	}
	return s, nil
}

func strField(raw map[string]any, k string, key func(string) string, fail func(key, format string, args ...any) error) (string, error) {
	v, ok := raw[k]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fail(key(k), "must be a string, not %s", tomlType(v))
	}
	return s, nil
}

func strList(raw map[string]any, k string, key func(string) string, fail func(key, format string, args ...any) error) ([]string, error) {
	v, ok := raw[k]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fail(key(k), "must be a list of strings, not %s", tomlType(v))
	}
	out := make([]string, 0, len(list))
	for j, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fail(key(k)+"["+strconv.Itoa(j)+"]", "must be a string, not %s", tomlType(e))
		}
		out = append(out, s)
	}
	return out, nil
}
