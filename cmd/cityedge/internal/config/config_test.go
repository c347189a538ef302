package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/cityedge/cityedge/uplink"
)

// validConfig returns a complete configuration whose TLS files exist in dir.
func validConfig(t testing.TB, dir string) string {
	t.Helper()
	for _, f := range []string{"ca.pem", "client.pem", "client.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return strings.NewReplacer("@DIR@", dir).Replace(`[agent]
id = "gw-0042"
site = "eixample-17"
state_dir = "@DIR@/state"

[buffer]
max_bytes = "256MiB"

[uplink]
brokers = ["mqtts://broker.example.org:8883"]
batch_max = 100
batch_wait = "1s"
ca_file = "@DIR@/ca.pem"
cert_file = "@DIR@/client.pem"
key_file = "@DIR@/client.key"

[[sensors]]
name = "bay-17"
driver = "gpio-presence"
pin = "GPIO17"
active = "low"
debounce = "200ms"

[[sensors]]
name = "air-1"
driver = "bme280"
bus = "1"
address = 0x76
interval = "10s"
`)
}

func parse(t *testing.T, dir, text string) (*Config, error) {
	t.Helper()
	path := filepath.Join(dir, "cityedge.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err == nil {
		err = cfg.CheckFiles(true)
	}
	return cfg, err
}

func TestConfigValid(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parse(t, dir, validConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Uplink.TopicPrefix, "cityedge/eixample-17/gw-0042"; got != want {
		t.Errorf("default topic prefix = %q, want %q", got, want)
	}
	if cfg.Buffer.MaxBytes != 256<<20 {
		t.Errorf("max_bytes = %d", cfg.Buffer.MaxBytes)
	}
	if len(cfg.Sensors) != 2 || cfg.Sensors[1].Address != 0x76 || cfg.Sensors[1].Interval != 10*time.Second {
		t.Errorf("sensors = %+v", cfg.Sensors)
	}
	if cfg.Sensors[0].Interval != defaultGPIOInterval || cfg.Sensors[0].Options == nil {
		t.Errorf("gpio sensor = %+v", cfg.Sensors[0])
	}
}

// TestConfigEveryDriverMinimal: every driver works with only name, driver
// and bus/pin (the ADC also needs its channel map), including drivers that
// take no options at all.
func TestConfigEveryDriverMinimal(t *testing.T) {
	dir := t.TempDir()
	head := validConfig(t, dir)
	head = head[:strings.Index(head, "[[sensors]]")]
	for _, name := range catalog.Names() {
		t.Run(name, func(t *testing.T) {
			drv, _ := catalog.Lookup(name)
			table := fmt.Sprintf("[[sensors]]\nname = \"s\"\ndriver = %q\n", name)
			if drv.Kind == catalog.GPIO {
				table += "pin = \"GPIO4\"\n"
			}
			if name == "ads1115" {
				table += "channels = [{ channel = 0, quantity = \"noise\", unit = \"dB\", from = [0.4, 2.0], to = [30.0, 130.0] }]\n"
			}
			cfg, err := parse(t, dir, head+table)
			if err != nil {
				t.Fatal(err)
			}
			if s := cfg.Sensors[0]; drv.Kind == catalog.I2C && s.Address != drv.Addrs[0] {
				t.Errorf("address %#x, want the default %#x", s.Address, drv.Addrs[0])
			}
		})
	}
}

func TestConfigTopicPrefixWithoutSite(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parse(t, dir, strings.Replace(validConfig(t, dir), `site = "eixample-17"`, "", 1))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.TopicPrefix != "cityedge/gw-0042" {
		t.Errorf("topic prefix = %q", cfg.Uplink.TopicPrefix)
	}
}

// TestConfigRejects: every bad configuration is refused with a message that
// names the file, the line where known, and the key.
func TestConfigRejects(t *testing.T) {
	cases := []struct {
		name     string
		old, new string // replacement applied to the valid config
		key      string // must appear in the error
		line     int    // expected line, 0 = not checked
		say      string // must appear in the error
	}{
		{"unknown top-level key", `site = "eixample-17"`, `site = "eixample-17"` + "\nsiet = 1", "agent.siet", 4, "unknown key"},
		{"unknown table", "[buffer]", "[bufer]", "bufer", 0, "unknown key"},
		{"agent id starting with a dash", `id = "gw-0042"`, `id = "-gw-0042"`, "agent.id", 0, "starting with a letter or digit"},
		{"agent id starting with a dot", `id = "gw-0042"`, `id = ".gw"`, "agent.id", 0, "RFC 8428"},
		{"wrong type", `batch_max = 100`, `batch_max = "100"`, "uplink.batch_max", 11, ""},
		{"missing id", `id = "gw-0042"`, ``, "agent.id", 0, "required"},
		{"bad id", `id = "gw-0042"`, `id = "gw 0042"`, "agent.id", 2, "letters, digits"},
		{"plaintext broker", `mqtts://broker.example.org:8883`, `mqtt://broker.example.org:1883`, "uplink.brokers", 10, "only speaks TLS"},
		{"websocket broker", `mqtts://broker.example.org:8883`, `ws://broker.example.org:80`, "uplink.brokers", 10, "only speaks TLS"},
		{"no brokers", `brokers = ["mqtts://broker.example.org:8883"]`, `brokers = []`, "uplink.brokers", 10, "required"},
		{"broker with path", `:8883"]`, `:8883/x"]`, "uplink.brokers", 10, "only scheme, host and port"},
		{"batch out of range", `batch_max = 100`, `batch_max = -1`, "uplink.batch_max", 11, "out of range"},
		{"batch too large", `batch_max = 100`, `batch_max = 100000`, "uplink.batch_max", 11, "out of range"},
		{"bad duration", `batch_wait = "1s"`, `batch_wait = "soon"`, "uplink.batch_wait", 12, "not a duration"},
		{"bad size", `max_bytes = "256MiB"`, `max_bytes = "lots"`, "buffer.max_bytes", 7, "not a size"},
		{"size too large", `max_bytes = "256MiB"`, `max_bytes = "3GiB"`, "buffer.max_bytes", 7, "out of range"},
		{"wildcard topic", `batch_max = 100`, "batch_max = 100\ntopic_prefix = \"city/#\"", "uplink.topic_prefix", 12, "wildcards"},
		{"missing ca file", `ca_file = "@DIR@/ca.pem"`, `ca_file = "@DIR@/nope.pem"`, "uplink.ca_file", 13, "no such file"},
		{"missing key file setting", `key_file = "@DIR@/client.key"`, ``, "uplink.key_file", 0, "required"},
		{"duplicate sensor name", `name = "air-1"`, `name = "bay-17"`, "sensors[1].name", 25, "already used"},
		{"bad sensor name", `name = "air-1"`, `name = "air 1"`, "sensors[1].name", 25, "letters, digits"},
		{"unknown driver", `driver = "bme280"`, `driver = "bme281"`, "sensors[1].driver", 26, "unknown driver"},
		{"unknown driver option", `debounce = "200ms"`, "debounce = \"200ms\"\ntreshold = 3", "sensors[0].treshold", 23, "unknown key"},
		{"bad driver option value", `active = "low"`, `active = "sideways"`, "sensors[0]", 0, "active"},
		{"bad driver option type", `debounce = "200ms"`, `debounce = 200`, "sensors[0].debounce", 22, "duration"},
		{"duration as number", `batch_wait = "1s"`, `batch_wait = 1`, "uplink.batch_wait", 12, "duration"},
		{"explicit zero batch", `batch_max = 100`, `batch_max = 0`, "uplink.batch_max", 11, "out of range"},
		{"address out of range", `address = 0x76`, `address = 0x80`, "sensors[1].address", 28, "7-bit"},
		{"address not the chip's", `address = 0x76`, `address = 0x40`, "sensors[1].address", 28, "0x76 or 0x77"},
		{"address as string", `address = 0x76`, `address = "0x76"`, "sensors[1].address", 28, "integer"},
		{"pin on i2c sensor", `address = 0x76`, "address = 0x76\npin = \"GPIO4\"", "sensors[1].pin", 29, "I2C"},
		{"gpio without pin", `pin = "GPIO17"`, ``, "sensors[0].pin", 0, "required"},
		{"interval too short", `interval = "10s"`, `interval = "1ms"`, "sensors[1].interval", 29, "100ms"},
		{"bad max_rate", `batch_max = 100`, "batch_max = 100\nmax_rate = \"fast\"", "uplink.max_rate", 12, "readings per second"},
		{"zero max_rate", `batch_max = 100`, "batch_max = 100\nmax_rate = \"0/s\"", "uplink.max_rate", 12, "out of range"},
		{"reserved sensor name", `name = "air-1"`, `name = "cityedge"`, "sensors[1].name", 25, "reserved"},
		{"no sensors", "[[sensors]]", "[[nosensors]]", "nosensors", 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			text := validConfig(t, dir)
			old := strings.ReplaceAll(c.old, "@DIR@", dir)
			if !strings.Contains(text, old) {
				t.Fatalf("test case does not apply: %q not in config", old)
			}
			text = strings.Replace(text, old, strings.ReplaceAll(c.new, "@DIR@", dir), 1)
			_, err := parse(t, dir, text)
			if err == nil {
				t.Fatalf("accepted:\n%s", text)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *ConfigError", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, filepath.Join(dir, "cityedge.toml")) {
				t.Errorf("error does not start with the file name: %s", msg)
			}
			if !strings.Contains(msg, c.key) {
				t.Errorf("error does not name key %q: %s", c.key, msg)
			}
			if c.line != 0 && ce.Line != c.line {
				t.Errorf("line = %d, want %d: %s", ce.Line, c.line, msg)
			}
			if !strings.Contains(msg, c.say) {
				t.Errorf("error does not say %q: %s", c.say, msg)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "4096": 4096, "10 MiB": 10 << 20, "7B": 7} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "1.5MiB", "1TB", "99999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// FuzzConfig: the parser never panics, and whatever it accepts is valid.
func FuzzConfig(f *testing.F) {
	dir := f.TempDir()
	f.Add(validConfig(f, dir))
	f.Add("[agent]\nid = \"x\"\n[[sensors]]\nname=\"a\"\ndriver=\"bme280\"\naddress=0x77\n")
	f.Add("[uplink]\nbrokers = [\"mqtts://[::1]:1\"]\n")
	f.Add("[[sensors]]\n[[sensors.channels]]\nchannel = 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse("fuzz.toml", []byte(text))
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			return
		}
		if !idRE.MatchString(cfg.Agent.ID) || len(cfg.Sensors) == 0 || len(cfg.Uplink.Brokers) == 0 {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
		for _, b := range cfg.Uplink.Brokers {
			if _, err := uplink.ParseBroker(b); err != nil {
				t.Fatalf("accepted broker %q", b)
			}
		}
	})
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"": {}, "100/s": {PerSec: 100}, "1KiB/s": {PerSec: 1024, Bytes: true}, " 2.5/s": {PerSec: 2.5}} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"fast", "100", "0/s", "-5/s", "1TB/s", "0.5/s"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}
