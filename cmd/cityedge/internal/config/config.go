// Package config is the agent's configuration file: the TOML keys users
// write (a contract: extended, never renamed), their defaults, and the
// validation that names file, line and key for every problem. Each rule that
// belongs to another part (broker URLs, topics, windows and batches in
// uplink; driver options in each chip's package) is checked by calling that
// part, never by a copy.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/remote"
	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/uplink"
	"github.com/pelletier/go-toml/v2"
)

// Config is the agent's configuration file (TOML). Key names are a contract
// with users: extend, never rename.
type Config struct {
	Agent   AgentConfig    `toml:"agent"`
	Buffer  BufferConfig   `toml:"buffer"`
	Uplink  UplinkConfig   `toml:"uplink"`
	Remote  RemoteConfig   `toml:"remote"`  // remote.go
	Metrics MetricsConfig  `toml:"metrics"` // remote.go
	Clock   ClockConfig    `toml:"clock"`   // clock.go
	Sentilo SentiloConfig  `toml:"sentilo"` // sentilo.go
	Sensors []SensorConfig `toml:"-"`
	// Parking guidance (zones.go): [guidance], [[zones]], [[signs]].
	Guidance GuidanceConfig  `toml:"guidance"`
	Zones    []guidance.Zone `toml:"-"`
	Signs    []SignConfig    `toml:"-"`

	path string
	pos  keyIndex
	// remote.go: read from agent.state_dir/remote.toml; the --config file;
	// the client pair installed under agent.state_dir/certs.
	remote     bool
	base       string
	installed  bool
	remoteKeys *remote.KeySet
}

// AgentConfig is the [agent] table.
type AgentConfig struct {
	ID       string `toml:"id"`
	Site     string `toml:"site"`
	StateDir string `toml:"state_dir"`
	LogLevel string `toml:"log_level"`
}

// BufferConfig is the [buffer] table.
type BufferConfig struct {
	MaxBytes       Size     `toml:"max_bytes"`
	CommitInterval Duration `toml:"commit_interval"`
}

// UplinkConfig is the [uplink] table.
type UplinkConfig struct {
	Brokers           []string `toml:"brokers"`
	TopicPrefix       string   `toml:"topic_prefix"`
	BatchMax          int      `toml:"batch_max"`
	BatchWait         Duration `toml:"batch_wait"`
	CAFile            string   `toml:"ca_file"`
	CertFile          string   `toml:"cert_file"`
	KeyFile           string   `toml:"key_file"`
	ServerName        string   `toml:"server_name"`
	ALPN              []string `toml:"alpn"`
	SystemRoots       bool     `toml:"system_roots"`
	ExpiryWarningDays int      `toml:"expiry_warning_days"`
	Window            int      `toml:"window"`
	ReconnectSpread   Duration `toml:"reconnect_spread"`
	MaxRate           string   `toml:"max_rate"`
	DrainOrder        string   `toml:"drain_order"`

	rate Rate // MaxRate, parsed
}

// Rate returns uplink.max_rate as parsed at load time.
func (u UplinkConfig) Rate() Rate { return u.rate }

// SensorConfig is one [[sensors]] table.
type SensorConfig struct {
	Name     string
	Driver   string
	Bus      string
	Address  uint16
	Pin      string
	Interval time.Duration
	Options  any // the driver's options struct (pointer), or nil
	// Location is a parking sensor's [lon, lat], or nil.
	Location *guidance.Location

	line int // where the table starts, for messages
}

// Duration is a time.Duration written as a Go duration string ("200ms",
// "10s"); driver options use the same type.
type Duration = catalog.Duration

// Size is a byte count written as "256MiB", "512KiB", "1GiB" or plain bytes.
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize reads a byte count: "256MiB", "512KiB", "1GiB" or plain bytes.
func ParseSize(t string) (int64, error) {
	t = strings.TrimSpace(t)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (use e.g. \"256MiB\", \"512KiB\", \"1GiB\")", t)
	}
	return n * mult, nil
}

// Defaults and limits. The buffer bound stays far below the 2 GB mmap limit
// of 32-bit ARM gateways.
const (
	DefaultPath     = "/etc/cityedge/cityedge.toml"
	defaultStateDir = "/var/lib/cityedge"
	defaultMaxBytes = 256 << 20
	minMaxBytes     = 1 << 20
	maxMaxBytes     = 1 << 30
	// DefaultCommitInterval: measured at the device (BenchmarkAgentDiskWrites,
	// 50 readings/s, broker up): 1s wrote 359 B/reading, as every reading
	// waits up to uplink.batch_wait (1s) before it is sent and so is written
	// before its PUBACK; 2s leaves the broker time to acknowledge it first,
	// and a reading acknowledged before its commit is never written (3
	// B/reading). It is the loss window of environmental readings the
	// broker has not acknowledged; occupancy changes commit within 50 ms.
	DefaultCommitInterval = 2 * time.Second
	defaultExpiryWarn     = 30
	defaultI2CInterval    = 10 * time.Second
	defaultGPIOInterval   = 60 * time.Second
	minInterval           = 100 * time.Millisecond
)

// ReservedSensor is the sensor name under which the agent reports on itself
// in the readings stream (drop counters); no configured sensor may take it.
const ReservedSensor = "cityedge"

var (
	idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	// agentIDRE: the agent id begins every SenML name, and RFC 8428
	// §4.5.1 wants a name to start with a letter or digit.
	agentIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	sensorRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// ConfigError is a configuration problem; the agent exits 2 on it.
type ConfigError struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted key, e.g. "uplink.brokers" or "sensors[1].address"
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and validates the configuration at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("cannot read configuration: %v", err)}
	}
	return Parse(path, data)
}

// Parse parses and validates data read from path. Every problem is a
// *ConfigError naming the file, the line where known, and the key; when
// the file has several, the error is Errors listing all of them in the
// order of the file. A TOML syntax error ends the reading there.
func Parse(path string, data []byte) (*Config, error) {
	pos := indexKeys(data)
	col := &collector{path: path, pos: pos}
	fail := col.fail

	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		return nil, tomlError(path, pos, err, data)
	}
	// Values of the wrong type are listed and taken out, so that decoding
	// goes on and every other problem is found too.
	for name, t := range tables() {
		switch v := raw[name].(type) {
		case map[string]any:
			checkTypes(v, t, name+".", fail)
		case []any:
			for i, e := range v {
				if m, ok := e.(map[string]any); ok && t != nil {
					checkTypes(m, t, fmt.Sprintf("%s[%d].", name, i), fail)
				}
			}
		}
	}
	src := data
	if len(col.errs) > 0 {
		var err error
		if src, err = toml.Marshal(raw); err != nil {
			return nil, col.err()
		}
	}

	// The fixed tables decode strictly in one pass; sensors are decoded per
	// table below, because each driver brings its own keys.
	var doc struct {
		Config
		Sensors []map[string]any `toml:"sensors"`
		Zones   []map[string]any `toml:"zones"`
		Signs   []map[string]any `toml:"signs"`
	}
	if err := toml.NewDecoder(bytes.NewReader(src)).DisallowUnknownFields().Decode(&doc); err != nil {
		var sm *toml.StrictMissingError
		if !errors.As(err, &sm) {
			col.add(tomlError(path, pos, err, src))
			return nil, col.err()
		}
		for _, e := range sm.Errors {
			k := strings.Join(e.Key(), ".")
			line := pos.line(k)
			if row, _ := e.Position(); line == 0 && len(src) == len(data) {
				line = row
			}
			col.add(&ConfigError{File: path, Line: line, Key: k, Msg: unknownKey(e.Key())})
		}
	}
	c := doc.Config
	c.path, c.pos = path, pos
	c.defaults(func(table, key string) bool {
		t, _ := raw[table].(map[string]any)
		_, ok := t[key]
		return ok
	})
	// Each section validates itself and records what it finds through fail;
	// a section added later plugs in here the same way.
	c.validate(fail)
	c.validateRemote(fail)
	c.validateClock(fail)
	names := map[string]int{}
	for i, raw := range doc.Sensors {
		s, err := parseSensor(path, i, raw, pos, fail)
		if err != nil {
			continue
		}
		if j, dup := names[s.Name]; dup {
			fail(fmt.Sprintf("sensors[%d].name", i), "sensor name %q is already used by sensors[%d]", s.Name, j)
			continue
		}
		names[s.Name] = i
		c.Sensors = append(c.Sensors, s)
	}
	if len(doc.Sensors) == 0 {
		fail("sensors", "no [[sensors]] configured; the agent would have nothing to read")
	}
	if err := col.err(); err != nil {
		return nil, err
	}
	if err := c.parseGuidance(raw, doc.Sensors, doc.Zones, doc.Signs); err != nil {
		return nil, err
	}
	if err := c.validateSentilo(fail); err != nil {
		return nil, err
	}
	return &c, nil
}

// defaults fills in what the file leaves out; has reports whether the file
// sets a key, so that an explicit 0 is validated rather than replaced.
func (c *Config) defaults(has func(table, key string) bool) {
	if !has("agent", "state_dir") {
		c.Agent.StateDir = defaultStateDir
	}
	if !has("agent", "log_level") {
		c.Agent.LogLevel = "info"
	}
	if !has("buffer", "max_bytes") {
		c.Buffer.MaxBytes = defaultMaxBytes
	}
	if !has("buffer", "commit_interval") {
		c.Buffer.CommitInterval = Duration(DefaultCommitInterval)
	}
	if !has("uplink", "topic_prefix") {
		if c.Agent.Site != "" {
			c.Uplink.TopicPrefix = "cityedge/" + c.Agent.Site + "/" + c.Agent.ID
		} else {
			c.Uplink.TopicPrefix = "cityedge/" + c.Agent.ID
		}
	}
	if !has("uplink", "batch_max") {
		c.Uplink.BatchMax = uplink.DefaultBatchMax
	}
	if !has("uplink", "batch_wait") {
		c.Uplink.BatchWait = Duration(uplink.DefaultBatchWait)
	}
	if !has("uplink", "window") {
		c.Uplink.Window = uplink.DefaultWindow
	}
	if !has("uplink", "reconnect_spread") {
		c.Uplink.ReconnectSpread = Duration(uplink.DefaultReconnectSpread)
	}
	if !has("uplink", "drain_order") {
		c.Uplink.DrainOrder = "live-first"
	}
	if !has("uplink", "expiry_warning_days") {
		c.Uplink.ExpiryWarningDays = defaultExpiryWarn
	}
	c.remoteDefaults(has)
	c.clockDefaults(has)
	c.sentiloDefaults(has)
}

// BufferFile is the buffer's file name inside agent.state_dir.
const BufferFile = "buffer.db"

// BufferPath is where the buffer lives: agent.state_dir/buffer.db.
func (c *Config) BufferPath() string { return filepath.Join(c.Agent.StateDir, BufferFile) }

// CertOptions are the certs package's options for the [uplink] TLS keys.
func (c *Config) CertOptions(log *slog.Logger) certs.Options {
	u := c.Uplink
	return certs.Options{CAFile: u.CAFile, CertFile: u.CertFile, KeyFile: u.KeyFile, ServerName: u.ServerName,
		ALPN: u.ALPN, SystemRoots: u.SystemRoots, WarnBefore: time.Duration(u.ExpiryWarningDays) * 24 * time.Hour, ExpectCN: c.Agent.ID, Logger: log}
}

// MQTT reports whether the MQTT output is configured (uplink.brokers). A
// gateway with [sentilo] may leave it out: Sentilo is then its only output,
// and [uplink] may still hold the TLS files [sentilo] inherits.
func (c *Config) MQTT() bool { return len(c.Uplink.Brokers) > 0 }

// Path is the file the configuration was read from.
func (c *Config) Path() string { return c.path }

// validate checks [agent], [buffer] and [uplink], recording every problem
// through fail.
func (c *Config) validate(fail Fail) {
	a, b, u := c.Agent, c.Buffer, c.Uplink
	switch {
	case a.ID == "":
		fail("agent.id", "required: a unique gateway id of letters, digits, '.', '_' or '-' (e.g. \"gw-0042\")")
	case !agentIDRE.MatchString(a.ID):
		fail("agent.id", "%q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (it begins every SenML name, RFC 8428 §4.5.1)", a.ID)
	}
	if a.Site != "" && !idRE.MatchString(a.Site) {
		fail("agent.site", "%q: use 1 to 64 letters, digits, '.', '_' or '-'", a.Site)
	}
	if a.LogLevel != "debug" && a.LogLevel != "info" && a.LogLevel != "warn" && a.LogLevel != "error" {
		fail("agent.log_level", "%q: use \"debug\", \"info\", \"warn\" or \"error\"", a.LogLevel)
	}
	if b.MaxBytes < minMaxBytes || b.MaxBytes > maxMaxBytes {
		fail("buffer.max_bytes", "%s is out of range: use 1MiB to 1GiB (32-bit gateways cannot map more)", sizeWords(int64(b.MaxBytes)))
	}
	if b.CommitInterval < 0 || b.CommitInterval.D() > 5*time.Second {
		fail("buffer.commit_interval", "%v is out of range: use 0s to 5s (it is the loss window on power cut)", b.CommitInterval.D())
	}
	if len(u.Brokers) == 0 && !c.Sentilo.Enabled() {
		fail("uplink.brokers", "required: at least one output: uplink.brokers (MQTT, e.g. \"mqtts://broker.example.org:8883\") or sentilo.url (Sentilo), or both")
	}
	if u.DrainOrder != "live-first" && u.DrainOrder != "oldest-first" {
		fail("uplink.drain_order", "%q: use \"live-first\" (default) or \"oldest-first\"", u.DrainOrder)
	}
	if u.ExpiryWarningDays < 1 || u.ExpiryWarningDays > 3650 {
		fail("uplink.expiry_warning_days", "%d is out of range: use 1 to 3650", u.ExpiryWarningDays)
	}
	for _, r := range []struct {
		key string
		err error
	}{
		{"uplink.batch_max", uplink.CheckBatchMax(u.BatchMax)},
		{"uplink.batch_wait", uplink.CheckBatchWait(u.BatchWait.D())},
		{"uplink.window", uplink.CheckWindow(u.Window)},
		{"uplink.reconnect_spread", uplink.CheckReconnectSpread(u.ReconnectSpread.D())},
		{"uplink.topic_prefix", uplink.CheckTopicPrefix(u.TopicPrefix)},
	} {
		if r.err != nil {
			fail(r.key, "%v", r.err)
		}
	}
	for i, raw := range u.Brokers {
		if _, err := uplink.ParseBroker(raw); err != nil {
			fail("uplink.brokers", "broker %d: %v", i+1, err)
		}
	}
	rate, err := ParseRate(u.MaxRate)
	if err != nil {
		fail("uplink.max_rate", "%v", err)
	}
	c.Uplink.rate = rate
}

// sizeWords shows a byte count in the largest whole unit that fits it.
func sizeWords(n int64) string {
	for _, u := range []struct {
		name string
		m    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return fmt.Sprintf("%d %s", n/u.m, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// CheckFiles verifies that the TLS files the configuration names can be read.
// It is separate from parsing because --enroll creates the key file.
func (c *Config) CheckFiles(keyToo bool) error {
	col := &collector{path: c.path, pos: c.pos}
	u := c.Uplink
	files := []struct{ key, path string }{{"uplink.ca_file", u.CAFile}, {"uplink.cert_file", u.CertFile}, {"uplink.key_file", u.KeyFile}}
	if !c.MQTT() {
		files = nil // Sentilo alone: [sentilo] names its files (validateSentilo)
	}
	for _, f := range files {
		if f.path == "" {
			col.fail(f.key, "required: the path of a PEM file (mutual TLS is mandatory)")
			continue
		}
		if !keyToo {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			col.fail(f.key, "cannot read %s: %v", f.path, unwrapPath(err))
			continue
		}
		fh.Close()
	}
	return col.err()
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// commonSensorKeys are the keys every [[sensors]] table may have; all others
// belong to the driver's options.
var commonSensorKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range SensorKeys() {
		m[k] = true
	}
	return m
}()

func parseSensor(path string, i int, raw map[string]any, pos keyIndex, fail Fail) (SensorConfig, error) {
	key := func(k string) string { return fmt.Sprintf("sensors[%d].%s", i, k) }
	s := SensorConfig{line: pos.line(fmt.Sprintf("sensors[%d]", i))}
	str := func(k string) (string, error) {
		v, ok := raw[k]
		if !ok {
			return "", nil
		}
		t, ok := v.(string)
		if !ok {
			return "", fail(key(k), "must be a string, not %s", tomlType(v))
		}
		return t, nil
	}
	// A bad name is recorded and the rest of the table still checked.
	var nameErr error
	name, err := str("name")
	switch {
	case err != nil:
		nameErr = err
	case name == "":
		nameErr = fail(key("name"), "required: a unique name of letters, digits, '-' or '_' (e.g. \"bay-17\")")
	case !sensorRE.MatchString(name):
		nameErr = fail(key("name"), "%q: use 1 to 64 letters, digits, '-' or '_'", name)
	case name == ReservedSensor:
		nameErr = fail(key("name"), "%q is reserved for the agent's own records (drop counters); choose another name", name)
	}
	s.Name = name
	if s.Name == "" || nameErr != nil {
		s.Name = fmt.Sprintf("sensors[%d]", i)
	}
	if s.Driver, err = str("driver"); err != nil {
		return s, err
	}
	drv, ok := catalog.Lookup(s.Driver)
	if !ok {
		return s, fail(key("driver"), "sensor %q: unknown driver %q; known drivers: %s", s.Name, s.Driver, strings.Join(catalog.Names(), ", "))
	}
	if s.Bus, err = str("bus"); err != nil {
		return s, err
	}
	if s.Pin, err = str("pin"); err != nil {
		return s, err
	}
	iv, err := str("interval")
	if err != nil {
		return s, err
	}
	if iv != "" {
		d, perr := time.ParseDuration(iv)
		if perr != nil || d < minInterval || d > 24*time.Hour {
			return s, fail(key("interval"), "sensor %q: %q: use a duration from 100ms to 24h (e.g. \"10s\")", s.Name, iv)
		}
		s.Interval = d
	}
	switch drv.Kind {
	case catalog.I2C:
		if _, has := raw["pin"]; has {
			return s, fail(key("pin"), "sensor %q: driver %s is on I2C; use bus and address, not pin", s.Name, s.Driver)
		}
		s.Address = drv.Addrs[0]
		if v, has := raw["address"]; has {
			n, ok := v.(int64)
			if !ok {
				return s, fail(key("address"), "sensor %q: must be an integer such as 0x%02x, not %s", s.Name, drv.Addrs[0], tomlType(v))
			}
			if n < 0x03 || n > 0x77 {
				return s, fail(key("address"), "sensor %q: %#x is not a 7-bit device address (0x03 to 0x77)", s.Name, n)
			}
			s.Address = uint16(n)
			if !containsAddr(drv.Addrs, s.Address) {
				return s, fail(key("address"), "sensor %q: a %s answers at %s, not %#02x", s.Name, drv.Chips, addrList(drv.Addrs), n)
			}
		}
		if s.Interval == 0 {
			s.Interval = defaultI2CInterval
		}
	case catalog.GPIO:
		for _, k := range []string{"bus", "address"} {
			if _, has := raw[k]; has {
				return s, fail(key(k), "sensor %q: driver %s is a GPIO input; use pin, not %s", s.Name, s.Driver, k)
			}
		}
		if s.Pin == "" {
			return s, fail(key("pin"), "sensor %q: required: the GPIO line name as the host names it (e.g. \"GPIO17\")", s.Name)
		}
		if s.Interval == 0 {
			s.Interval = defaultGPIOInterval
		}
	}
	// Driver options: everything that is not a common key, decoded strictly.
	opts := map[string]any{}
	for k, v := range raw {
		if !commonSensorKeys[k] {
			opts[k] = v
		}
	}
	if drv.Options != nil {
		s.Options = drv.Options()
	}
	if s.Options == nil {
		for k := range opts {
			hint := ""
			if n := nearest(k, SensorKeys()); n != "" {
				hint = fmt.Sprintf(" (did you mean `%s`?)", n)
			}
			err = fail(key(k), "sensor %q: unknown key %q: driver %s takes no options%s", s.Name, k, s.Driver, hint)
		}
		if err != nil {
			return s, err
		}
		return s, nameErr
	}
	before := len(opts)
	checkTypes(opts, s.Options, fmt.Sprintf("sensors[%d].", i), fail)
	if len(opts) != before {
		return s, errors.New("bad option types")
	}
	enc, err := toml.Marshal(opts)
	if err != nil {
		return s, fail(fmt.Sprintf("sensors[%d]", i), "sensor %q: %v", s.Name, err)
	}
	if err := toml.NewDecoder(bytes.NewReader(enc)).DisallowUnknownFields().Decode(s.Options); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) && len(sm.Errors) > 0 {
			for _, e := range sm.Errors {
				k := strings.Join(e.Key(), ".")
				hint := ""
				if n := nearest(k, append(optionKeys(s.Options), SensorKeys()...)); n != "" {
					hint = fmt.Sprintf(": did you mean `%s`?", n)
				}
				err = fail(key(k), "sensor %q: unknown key %q for driver %s%s (it takes: %s)", s.Name, k, s.Driver, hint, strings.Join(optionKeys(s.Options), ", "))
			}
			return s, err
		}
		k := ""
		var de *toml.DecodeError
		if errors.As(err, &de) {
			k = strings.Join(de.Key(), ".")
		}
		if k == "" {
			k = guessKey(err.Error(), opts)
		}
		return s, fail(key(k), "sensor %q: %v", s.Name, cleanTOMLError(err))
	}
	if v, ok := s.Options.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return s, fail(fmt.Sprintf("sensors[%d]", i), "sensor %q: %v", s.Name, err)
		}
	}
	return s, nameErr
}

func containsAddr(list []uint16, a uint16) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func addrList(list []uint16) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = fmt.Sprintf("%#02x", a)
	}
	return strings.Join(s, " or ")
}

// optionKeys lists the toml keys of an options struct, for "it takes: ..."
func optionKeys(opts any) []string {
	t := reflect.TypeOf(opts)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < t.NumField(); i++ {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out
}

// guessKey finds which option key a go-toml type error is about when the
// error carries no key (its message names the struct field instead).
func guessKey(msg string, opts map[string]any) string {
	for k := range opts {
		if strings.Contains(strings.ToLower(msg), strings.ReplaceAll(strings.ToLower(k), "_", "")) {
			return k
		}
	}
	return "?"
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func cleanTOMLError(err error) string {
	return strings.TrimPrefix(err.Error(), "toml: ")
}

// tomlError turns a go-toml error into a ConfigError with the line and key.
func tomlError(path string, pos keyIndex, err error, data []byte) *ConfigError {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		e := sm.Errors[0]
		row, _ := e.Position()
		return &ConfigError{File: path, Line: row, Key: strings.Join(e.Key(), "."), Msg: unknownKey(e.Key())}
	}
	msg := cleanTOMLError(err)
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if key == "" {
			key = pos.keyAt(row)
		} else if t := tableAt(data, row); t != "" && !strings.HasPrefix(key, t+".") && !strings.Contains(key, ".") {
			key = t + "." + key // go-toml names a duplicate key without its table
		}
		if strings.Contains(msg, "UTF-8") {
			msg = "the value holds bytes that are not UTF-8 text: save the file as UTF-8 (" + msg + ")"
		}
		return &ConfigError{File: path, Line: row, Key: key, Msg: msg}
	}
	// go-toml's type errors name the Go field ("struct field
	// config.UplinkConfig.BatchMax of type int"); name the key instead.
	key := ""
	if f := fieldRE.FindStringSubmatch(msg); f != nil {
		key = fieldKey(f[1], f[2])
		msg = strings.Replace(msg, f[0], "this key", 1)
	}
	return &ConfigError{File: path, Line: pos.line(key), Key: key, Msg: msg}
}

var fieldRE = regexp.MustCompile(`struct field (?:\w+\.)*(\w+)\.(\w+)(?: of type [\w.\[\]]+)?`)

func fieldKey(typ, field string) string {
	for table, t := range tables() {
		if t == nil || t.Name() != typ {
			continue
		}
		if f, ok := t.FieldByName(field); ok {
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			return table + "." + tag
		}
	}
	return ""
}

// keyIndex maps dotted keys ("uplink.brokers", "sensors[2].address",
// "sensors[2]") to the line where they appear. It is a light line scanner for
// messages only; go-toml does the parsing.
type keyIndex map[string]int

func (k keyIndex) line(key string) int { return k[key] }

// keyAt is the key written on line row ("" when none is), for parse errors
// that know only where they happened.
func (k keyIndex) keyAt(row int) string {
	best := ""
	for key, n := range k {
		if n == row && (best == "" || strings.Count(key, ".") > strings.Count(best, ".") || key < best && strings.Count(key, ".") == strings.Count(best, ".")) {
			best = key
		}
	}
	return best
}

var (
	tableRE    = regexp.MustCompile(`^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]`)
	arrTableRE = regexp.MustCompile(`^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]`)
	keyRE      = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=`)
)

// tableAt is the table whose keys line row is among ("sensors[1]" for the
// second [[sensors]]), "" at the top.
func tableAt(data []byte, row int) string {
	table := ""
	count := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; n < row && sc.Scan(); n++ {
		if m := arrTableRE.FindStringSubmatch(sc.Text()); m != nil {
			if outer, _, sub := strings.Cut(m[1], "."); sub && count[outer] > 0 {
				continue
			}
			count[m[1]]++
			table = fmt.Sprintf("%s[%d]", m[1], count[m[1]]-1)
		} else if m := tableRE.FindStringSubmatch(sc.Text()); m != nil {
			table = m[1]
		}
	}
	return table
}

func indexKeys(data []byte) keyIndex {
	idx := keyIndex{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	table, plain := "", ""    // plain: table without the array index
	count := map[string]int{} // arrays of tables seen so far
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := arrTableRE.FindStringSubmatch(line); m != nil {
			outer, _, sub := strings.Cut(m[1], ".")
			if i, ok := count[outer]; sub && ok {
				table, plain = fmt.Sprintf("%s[%d]", outer, i-1), outer // sensors.channels belong to their sensor
			} else {
				count[m[1]]++
				table, plain = fmt.Sprintf("%s[%d]", m[1], count[m[1]]-1), m[1]
				idx[table] = n
				if _, ok := idx[plain]; !ok {
					idx[plain] = n
				}
			}
			continue
		}
		if m := tableRE.FindStringSubmatch(line); m != nil {
			table, plain = m[1], m[1]
			if _, ok := idx[table]; !ok {
				idx[table] = n
			}
			continue
		}
		if m := keyRE.FindStringSubmatch(line); m != nil {
			k := m[1]
			if table != "" {
				k = table + "." + k
			}
			if _, ok := idx[k]; !ok {
				idx[k] = n
			}
			if p := plain + "." + m[1]; plain != table {
				if _, ok := idx[p]; !ok {
					idx[p] = n
				}
			}
		}
	}
	return idx
}
