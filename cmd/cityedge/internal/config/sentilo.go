package config

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/uplink/sentilo"
)

// SentiloConfig is the [sentilo] table: the second output, to the city's
// Sentilo platform through its TLS reverse proxy (uplink/sentilo). Its
// rules are the sentilo package's; this only reads the keys.
type SentiloConfig struct {
	URL           string            `toml:"url"`
	Provider      string            `toml:"provider"`
	TokenFile     string            `toml:"token_file"`
	CAFile        string            `toml:"ca_file"`     // default: uplink.ca_file
	CertFile      string            `toml:"cert_file"`   // default: uplink.cert_file
	KeyFile       string            `toml:"key_file"`    // default: uplink.key_file
	ServerName    string            `toml:"server_name"` // default: the url's host
	BatchMax      int               `toml:"batch_max"`
	BatchWait     Duration          `toml:"batch_wait"`
	Timeout       Duration          `toml:"timeout"`
	IDs           map[string]string `toml:"ids"`
	OccupiedValue string            `toml:"occupied_value"`
	FreeValue     string            `toml:"free_value"`

	token string                      // read from token_file at load; never printed
	ids   map[sentilo.Quantity]string // every published series → its Sentilo id
}

// Enabled reports whether [sentilo] is configured.
func (s SentiloConfig) Enabled() bool {
	return s.URL != "" || s.Provider != "" || s.TokenFile != ""
}

// Token is the provider's token read from sentilo.token_file. Like a
// private key it never appears in logs, status, metrics or diagnose.
func (s SentiloConfig) Token() string { return s.token }

// IDMap is every series the agent publishes to Sentilo and its id.
func (s SentiloConfig) IDMap() map[sentilo.Quantity]string { return s.ids }

// String hides the token (a %v of the config never shows it).
func (s SentiloConfig) String() string {
	return fmt.Sprintf("{url %s provider %s token_file %s}", s.URL, s.Provider, s.TokenFile)
}

// sentiloDefaults fills what [sentilo] leaves out.
func (c *Config) sentiloDefaults(has func(table, key string) bool) {
	s := &c.Sentilo
	if !s.Enabled() {
		return
	}
	if !has("sentilo", "batch_max") {
		s.BatchMax = sentilo.DefaultBatchMax
	}
	if !has("sentilo", "batch_wait") {
		s.BatchWait = Duration(sentilo.DefaultBatchWait)
	}
	if !has("sentilo", "timeout") {
		s.Timeout = Duration(sentilo.DefaultTimeout)
	}
	if !has("sentilo", "occupied_value") {
		s.OccupiedValue = sentilo.DefaultOccupiedValue
	}
	if !has("sentilo", "free_value") {
		s.FreeValue = sentilo.DefaultFreeValue
	}
	if s.CAFile == "" {
		s.CAFile = c.Uplink.CAFile
	}
	if s.CertFile == "" {
		s.CertFile = c.Uplink.CertFile
	}
	if s.KeyFile == "" {
		s.KeyFile = c.Uplink.KeyFile
	}
}

// SentiloQuantities lists every series the agent publishes to Sentilo
// (sensor/quantity), sorted, with what the catalog says of each: the
// configured sensors' quantities, each zone's counts (free, occupied,
// unknown, total) and the agent's drop report.
func (c *Config) SentiloQuantities() []SentiloSeries {
	var out []SentiloSeries
	for _, s := range c.Sensors {
		loc := point(s.Location)
		for _, q := range catalog.Quantities(s.Driver, s.Options) {
			out = append(out, SentiloSeries{Quantity: sentilo.Quantity{Sensor: s.Name, Quantity: q.Name}, Unit: q.Unit, Bool: q.Bool,
				Parking: IsParking(s.Driver), Location: loc})
		}
	}
	for _, z := range c.Zones {
		for _, q := range ZoneQuantities {
			out = append(out, SentiloSeries{Quantity: sentilo.Quantity{Sensor: z.Name, Quantity: q}, Unit: "count",
				Parking: true, Location: point(z.Location)})
		}
	}
	// The agent's drop report (its per-sensor parts are not published).
	out = append(out, SentiloSeries{Quantity: sentilo.Quantity{Sensor: ReservedSensor, Quantity: "dropped"}, Unit: "count"},
		SentiloSeries{Quantity: sentilo.Quantity{Sensor: ReservedSensor, Quantity: "corrupt"}, Unit: "count"})
	sort.Slice(out, func(i, j int) bool { return out[i].Quantity.String() < out[j].Quantity.String() })
	return out
}

// ZoneQuantities are the series a zone publishes to Sentilo, as
// <agent.id>-<zone>-<quantity>.
var ZoneQuantities = []string{"free", "occupied", "unknown", "total"}

// SentiloSeries is one published series.
type SentiloSeries struct {
	sentilo.Quantity
	Unit     string
	Bool     bool
	Parking  bool        // a bay's or a zone's: componentType parking
	Location *[2]float64 // [lon, lat] where configured
}

// point is a configured location as one [lon, lat] point, Sentilo's only
// kind: a point as it is, an area by the mean of its ring's corners.
func point(l *guidance.Location) *[2]float64 {
	switch {
	case l == nil:
		return nil
	case len(l.Ring) < 2:
		p := l.Point
		return &p
	}
	corners := l.Ring[:len(l.Ring)-1] // the ring is closed: its last point is its first
	var p [2]float64
	for _, c := range corners {
		p[0] += c[0] / float64(len(corners))
		p[1] += c[1] / float64(len(corners))
	}
	return &p
}

// validateSentilo checks [sentilo] (after the sensors are read: the ids
// table names them) and reads the token file. A file that group or others
// may read is refused like uplink.key_file.
func (c *Config) validateSentilo(fail func(key, format string, args ...any) error) error {
	s := &c.Sentilo
	if !s.Enabled() {
		if len(s.IDs) > 0 {
			return fail("sentilo.ids", "set, but [sentilo] has no url: configure the output or remove the table")
		}
		return nil
	}
	if err := sentilo.ValidateURL(s.URL); err != nil {
		return fail("sentilo.url", "%v", trimKey(err, "sentilo.url"))
	}
	if err := sentilo.ValidateProvider(s.Provider); err != nil {
		return fail("sentilo.provider", "%v", trimKey(err, "sentilo.provider"))
	}
	tok, err := sentilo.ReadToken(s.TokenFile)
	if err != nil {
		return fail("sentilo.token_file", "%v", trimKey(err, "sentilo.token_file"))
	}
	s.token = tok
	if s.CertFile == "" || s.KeyFile == "" {
		return fail("sentilo.cert_file", "required (or uplink.cert_file and uplink.key_file): the city's proxy asks for the gateway's client certificate")
	}
	if s.CAFile == "" && !c.Uplink.SystemRoots {
		return fail("sentilo.ca_file", "required (or uplink.ca_file): the CA that signed the city's proxy certificate")
	}
	sc := sentilo.Config{URL: s.URL, Provider: s.Provider, Token: tok, TLS: &tls.Config{}, BatchMax: s.BatchMax,
		BatchWait: s.BatchWait.D(), Timeout: s.Timeout.D(), OccupiedValue: s.OccupiedValue, FreeValue: s.FreeValue}
	if err := sc.Validate(); err != nil {
		key, _, _ := strings.Cut(err.Error(), ":")
		key, _, _ = strings.Cut(key, " ") // "sentilo.occupied_value and sentilo.free_value are both ..."
		if !strings.HasPrefix(key, "sentilo.") {
			key = "sentilo"
		}
		return fail(key, "%v", trimKey(err, key))
	}
	sensors := map[string]bool{}
	for _, se := range c.Sensors {
		sensors[se.Name] = true
	}
	for i, z := range c.Zones {
		if sensors[z.Name] || z.Name == ReservedSensor {
			return fail(fmt.Sprintf("zones[%d].name", i), "zone %q has the name of a sensor: with [sentilo] their ids (<agent.id>-<name>-<quantity>) would collide; rename one", z.Name)
		}
	}
	var qs []sentilo.Quantity
	for _, se := range c.SentiloQuantities() {
		qs = append(qs, se.Quantity)
	}
	ids, err := sentilo.MapIDs(c.Agent.ID, qs, s.IDs)
	if err != nil {
		return fail("sentilo.ids", "%v", trimKey(err, "sentilo.ids"))
	}
	s.ids = ids
	return nil
}

// SentiloTimeout is sentilo.timeout as a time.Duration.
func (s SentiloConfig) SentiloTimeout() time.Duration { return s.Timeout.D() }

// trimKey drops a leading "key: " from err's text: ConfigError names the key.
func trimKey(err error, key string) string {
	return strings.TrimPrefix(err.Error(), key+": ")
}

// SentiloCatalog is what the city's administrator registers for this
// gateway (cityedge --sentilo-catalog prints it as the body of POST
// /catalog/{provider}): every id with its type (the quantity), data type,
// unit and component; bays (sensors with an occupancy flag) and zones are
// components of type parking.
func (c *Config) SentiloCatalog() []sentilo.CatalogSensor {
	series := c.SentiloQuantities()
	out := make([]sentilo.CatalogSensor, 0, len(series))
	for _, s := range series {
		id, ok := c.Sentilo.ids[s.Quantity]
		if !ok {
			continue
		}
		out = append(out, sentilo.CatalogSensor{ID: id, Description: s.Quantity.String() + " of gateway " + c.Agent.ID,
			Type: s.Quantity.Quantity, Boolean: s.Bool, Unit: s.Unit, Component: sentilo.ComponentID(c.Agent.ID, s.Sensor),
			Parking: s.Parking, Location: s.Location})
	}
	return out
}
