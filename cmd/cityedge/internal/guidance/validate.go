package guidance

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FieldError is a configuration error at one key, spelled as the config
// file has it ("zones[1].bays[0]"); the config package adds file and line.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckName checks a zone's or a sign's name: 1 to 64 letters, digits, '-'
// or '_' (it becomes part of MQTT topics and entity ids).
func CheckName(key, name string) error {
	if !nameRE.MatchString(name) {
		return fieldErr(key, "%q: use 1 to 64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// Categories are the values the Smart Data Models ParkingGroup schema allows
// in category (dataModel.Parking, ParkingGroup/schema.json).
var Categories = []string{
	"adjacentSpaces", "blueZone", "completeFloor", "free", "feeCharged", "greenZone",
	"loadUnloadZone", "nonAdjacentSpaces", "offStreet", "onlyDisabled",
	"onlyElectricalCharging", "onlyResidents", "onlyWithPermit", "onStreet",
	"particularConditionsSpaces", "shortTermMediumTermLongTerm", "statisticsOnly",
	"vehicleTypeSpaces",
}

// DefaultCategory is a zone's category when it names none.
var DefaultCategory = []string{"onStreet"}

// CheckCategory checks a zone's category list.
func CheckCategory(key string, cats []string) error {
	if len(cats) == 0 {
		return fieldErr(key, "empty: name at least one category, or leave the key out for %q", DefaultCategory)
	}
	for i, c := range cats {
		if !slices.Contains(Categories, c) {
			return fieldErr(fmt.Sprintf("%s[%d]", key, i), "%q is not a ParkingGroup category (one of: %s)", c, strings.Join(Categories, ", "))
		}
		if j := slices.Index(cats, c); j < i {
			return fieldErr(fmt.Sprintf("%s[%d]", key, i), "%q is listed twice", c)
		}
	}
	return nil
}

// ngsiIDRE is the NGSI entity identifier pattern of the Smart Data Models
// common schema (EntityIdentifierType).
var ngsiIDRE = regexp.MustCompile("^[\\w\\-\\.\\{\\}\\$\\+\\*\\[\\]`|~^@!,:\\\\]+$")

// CheckSite checks a parking site id (refParkingSite): an NGSI entity id of
// at most 256 characters, or an absolute URI such as
// "urn:ngsi-ld:OnStreetParking:santander:daoiz-velarde".
func CheckSite(key, site string) error {
	if len(site) <= 256 && ngsiIDRE.MatchString(site) {
		return nil
	}
	if u, err := url.Parse(site); err == nil && u.Scheme != "" && !strings.ContainsAny(site, " \t\n") {
		return nil
	}
	return fieldErr(key, "%q is not an entity id: use letters, digits and - _ . : (at most 256), or a URI such as \"urn:ngsi-ld:OnStreetParking:...\"", site)
}

// Location is a GeoJSON Point or Polygon, in WGS 84 longitude and latitude.
type Location struct {
	// Point is [lon, lat] when Ring is nil.
	Point [2]float64
	// Ring is the polygon's closed outer ring (first point = last point,
	// at least 4 points); nil for a point.
	Ring [][2]float64
}

// MarshalJSON writes the location as GeoJSON.
func (l *Location) MarshalJSON() ([]byte, error) {
	if l.Ring != nil {
		return json.Marshal(struct {
			Type        string         `json:"type"`
			Coordinates [][][2]float64 `json:"coordinates"`
		}{"Polygon", [][][2]float64{l.Ring}})
	}
	return json.Marshal(struct {
		Type        string     `json:"type"`
		Coordinates [2]float64 `json:"coordinates"`
	}{"Point", l.Point})
}

// ParsePoint reads a [lon, lat] value as the config decoder hands it over
// ([]any of numbers, or []float64).
func ParsePoint(key string, v any) (*Location, error) {
	p, err := point(key, v)
	if err != nil {
		return nil, err
	}
	return &Location{Point: p}, nil
}

// ParseLocation reads a zone's location: [lon, lat], or a list of
// [lon, lat] forming a closed polygon ring (first point repeated last, at
// least 4 points).
func ParseLocation(key string, v any) (*Location, error) {
	list, ok := asList(v)
	if !ok {
		return nil, fieldErr(key, "want [lon, lat] or a list of [lon, lat] points, not %s", typeName(v))
	}
	if len(list) > 0 {
		if _, nested := asList(list[0]); !nested {
			return ParsePoint(key, v)
		}
	}
	var ring [][2]float64
	for i, e := range list {
		p, err := point(fmt.Sprintf("%s[%d]", key, i), e)
		if err != nil {
			return nil, err
		}
		ring = append(ring, p)
	}
	l := &Location{Ring: ring}
	if err := l.check(key); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Location) check(key string) error {
	if l.Ring == nil {
		return checkPoint(key, l.Point)
	}
	if len(l.Ring) < 4 {
		return fieldErr(key, "a polygon needs at least 4 points (3 corners and the first again to close it), not %d", len(l.Ring))
	}
	for i, p := range l.Ring {
		if err := checkPoint(fmt.Sprintf("%s[%d]", key, i), p); err != nil {
			return err
		}
	}
	if l.Ring[0] != l.Ring[len(l.Ring)-1] {
		return fieldErr(key, "the polygon is not closed: its last point %v must repeat its first %v", l.Ring[len(l.Ring)-1], l.Ring[0])
	}
	return nil
}

func point(key string, v any) ([2]float64, error) {
	list, ok := asList(v)
	if !ok || len(list) != 2 {
		return [2]float64{}, fieldErr(key, "want [lon, lat], two numbers, not %s", describe(v))
	}
	var p [2]float64
	for i, e := range list {
		f, ok := number(e)
		if !ok {
			return p, fieldErr(key, "want [lon, lat], two numbers; element %d is %s", i, typeName(e))
		}
		p[i] = f
	}
	return p, checkPoint(key, p)
}

func checkPoint(key string, p [2]float64) error {
	if p[0] < -180 || p[0] > 180 || p[0] != p[0] {
		return fieldErr(key, "longitude %v is outside -180 to 180 (the order is [lon, lat])", p[0])
	}
	if p[1] < -90 || p[1] > 90 || p[1] != p[1] {
		return fieldErr(key, "latitude %v is outside -90 to 90 (the order is [lon, lat])", p[1])
	}
	return nil
}

func asList(v any) ([]any, bool) {
	switch l := v.(type) {
	case []any:
		return l, true
	case []float64:
		out := make([]any, len(l))
		for i, f := range l {
			out[i] = f
		}
		return out, true
	case [][]float64:
		out := make([]any, len(l))
		for i, f := range l {
			out[i] = f
		}
		return out, true
	}
	return nil, false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int64, int:
		return "a number"
	case map[string]any:
		return "a table"
	case []any, []float64, [][]float64:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

func describe(v any) string {
	if l, ok := asList(v); ok {
		return "a list of " + strconv.Itoa(len(l))
	}
	return typeName(v)
}

// Check checks the zones against the sensors and each other, naming the
// offending key: zone names (valid, unique), bays (at least one; each a
// configured parking sensor with an interval; none listed twice or in two
// zones), categories, locations, sites, and with SmartDataModels a location
// for every bay.
func (c *Config) Check() error {
	if c.Site != "" {
		if err := CheckSite("agent.site", c.Site); err != nil {
			return err
		}
	}
	zoneAt := map[string]int{}
	bayAt := map[string][2]int{}
	for i, z := range c.Zones {
		key := fmt.Sprintf("zones[%d]", i)
		if err := CheckName(key+".name", z.Name); err != nil {
			return err
		}
		if j, dup := zoneAt[z.Name]; dup {
			return fieldErr(key+".name", "zone %q is already zones[%d]", z.Name, j)
		}
		zoneAt[z.Name] = i
		if len(z.Bays) == 0 {
			return fieldErr(key+".bays", "zone %q has no bays: list the parking sensors that make it up", z.Name)
		}
		for j, name := range z.Bays {
			bkey := fmt.Sprintf("%s.bays[%d]", key, j)
			s, ok := c.Sensors[name]
			switch {
			case !ok:
				return fieldErr(bkey, "no sensor is named %q", name)
			case !s.Parking:
				return fieldErr(bkey, "sensor %q (%s) does not report occupied: only parking sensors can be bays", name, s.Driver)
			case s.Interval <= 0:
				return fieldErr(bkey, "sensor %q has no interval", name)
			}
			if at, dup := bayAt[name]; dup && at[0] == i {
				return fieldErr(bkey, "sensor %q is listed twice (also bays[%d])", name, at[1])
			} else if dup {
				return fieldErr(bkey, "sensor %q is already a bay of zone %q (zones[%d]): a bay belongs to one zone", name, c.Zones[at[0]].Name, at[0])
			}
			bayAt[name] = [2]int{i, j}
			if s.Location != nil {
				if err := s.Location.check(bkey); err != nil {
					return err
				}
			} else if c.SmartDataModels {
				return fieldErr(bkey, "smart_data_models = true needs a location for every bay (the ParkingSpot model requires it): add location = [lon, lat] to sensor %q", name)
			}
		}
		if z.Category != nil {
			if err := CheckCategory(key+".category", z.Category); err != nil {
				return err
			}
		}
		if z.Location != nil {
			if err := z.Location.check(key + ".location"); err != nil {
				return err
			}
		}
		if z.Site != "" {
			if err := CheckSite(key+".site", z.Site); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sign is what Check needs of one [[signs]] table.
type Sign struct {
	Name string
	Zone string
}

// CheckSigns checks the signs' names (valid, unique) and that each shows a
// configured zone.
func CheckSigns(signs []Sign, zones []Zone) error {
	at := map[string]int{}
	for i, s := range signs {
		key := fmt.Sprintf("signs[%d]", i)
		if err := CheckName(key+".name", s.Name); err != nil {
			return err
		}
		if j, dup := at[s.Name]; dup {
			return fieldErr(key+".name", "sign %q is already signs[%d]", s.Name, j)
		}
		at[s.Name] = i
		if !slices.ContainsFunc(zones, func(z Zone) bool { return z.Name == s.Zone }) {
			names := make([]string, len(zones))
			for k, z := range zones {
				names[k] = strconv.Quote(z.Name)
			}
			known := "no zones are configured"
			if len(names) > 0 {
				known = "zones: " + strings.Join(names, ", ")
			}
			return fieldErr(key+".zone", "sign %q shows zone %q, which is not configured (%s)", s.Name, s.Zone, known)
		}
	}
	return nil
}

// BusDevice is one configured I2C device, sensor or sign.
type BusDevice struct {
	Key  string // the table, e.g. "signs[0]" or "sensors[3]"
	Name string
	Bus  string // as configured: "1", "I2C1", "/dev/i2c-1"; "" for the first bus
	Addr uint16
}

// CheckAddresses reports the first device configured at a bus address that
// an earlier one already uses: two chips cannot answer at one address.
func CheckAddresses(devs []BusDevice) error {
	type slot struct {
		bus  string
		addr uint16
	}
	seen := map[slot]BusDevice{}
	for _, d := range devs {
		s := slot{normBus(d.Bus), d.Addr}
		if o, dup := seen[s]; dup {
			return fieldErr(d.Key+".address", "%q at %#02x on bus %s: %q (%s) is already configured there; two devices cannot answer at one address", d.Name, d.Addr, busName(d.Bus), o.Name, o.Key)
		}
		seen[s] = d
	}
	return nil
}

// normBus maps the spellings of one Linux bus ("1", "I2C1", "i2c-1",
// "/dev/i2c-1") to one.
func normBus(b string) string {
	s := strings.TrimPrefix(b, "/dev/")
	for _, p := range []string{"I2C", "i2c-", "i2c"} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			if _, err := strconv.Atoi(rest); err == nil {
				return rest
			}
		}
	}
	return s
}

func busName(b string) string {
	if b == "" {
		return "(the first bus)"
	}
	return b
}
