package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/uplink/sentilo"
)

const testToken = "c1ty-t0ken-abcdef0123456789"

// sentiloConfig is the valid config with a [sentilo] table and its token file.
func sentiloConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "sentilo.token"), []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return validConfig(t, dir) + fmt.Sprintf(`
[sentilo]
url = "https://sentilo.city.example/api"
provider = "cityedge-gw"
token_file = "%s/sentilo.token"
%s`, dir, extra)
}

func TestSentiloConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parse(t, dir, sentiloConfig(t, dir, `
[sentilo.ids]
"bay-17/occupied" = "PLAZA-17"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sentilo
	if !s.Enabled() || s.Token() != testToken || s.BatchMax != sentilo.DefaultBatchMax || s.BatchWait.D() != sentilo.DefaultBatchWait ||
		s.Timeout.D() != sentilo.DefaultTimeout || s.OccupiedValue != "true" || s.FreeValue != "false" {
		t.Fatalf("defaults: %+v", s)
	}
	if s.CAFile != cfg.Uplink.CAFile || s.CertFile != cfg.Uplink.CertFile || s.KeyFile != cfg.Uplink.KeyFile {
		t.Fatalf("TLS files do not default to uplink's: %+v", s)
	}
	ids := s.IDMap()
	for q, want := range map[sentilo.Quantity]string{
		{Sensor: "bay-17", Quantity: "occupied"}:   "PLAZA-17",
		{Sensor: "air-1", Quantity: "temperature"}: "gw-0042-air-1-temperature",
		{Sensor: "air-1", Quantity: "humidity"}:    "gw-0042-air-1-humidity",
		{Sensor: "cityedge", Quantity: "dropped"}:  "gw-0042-cityedge-dropped",
	} {
		if ids[q] != want {
			t.Errorf("id of %s = %q, want %q", q, ids[q], want)
		}
	}
	if strings.Contains(fmt.Sprintf("%v %+v", cfg.Sentilo, cfg.Sentilo), testToken) {
		t.Fatal("the token shows when the config is printed")
	}
}

// TestSentiloConfigRejects: every bad [sentilo] input is a ConfigError
// naming the key (exit 2), never showing the token.
func TestSentiloConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, extra, key, say string
		mode                            os.FileMode
	}{
		{name: "plaintext url", old: `url = "https://`, new: `url = "http://`, key: "sentilo.url", say: "only https://"},
		{name: "no url", old: `url = "https://sentilo.city.example/api"`, new: ``, key: "sentilo.url", say: "required"},
		{name: "bad provider", old: `provider = "cityedge-gw"`, new: `provider = "city edge"`, key: "sentilo.provider", say: "letters, digits"},
		{name: "token world-readable", mode: 0o644, key: "sentilo.token_file", say: "chmod 600"},
		{name: "token missing", old: `sentilo.token"`, new: `nope.token"`, key: "sentilo.token_file", say: "does not exist"},
		{name: "bad id", extra: "[sentilo.ids]\n\"air-1/temperature\" = \"T 1\"\n", key: "sentilo.ids", say: "letters, digits"},
		{name: "id collision", extra: "[sentilo.ids]\n\"air-1/temperature\" = \"X\"\n\"air-1/humidity\" = \"X\"\n", key: "sentilo.ids", say: `"air-1/humidity" and "air-1/temperature"`},
		{name: "ids key naming no sensor", extra: "[sentilo.ids]\n\"air-9/temperature\" = \"X\"\n", key: "sentilo.ids", say: "names no configured sensor"},
		{name: "batch_max", extra: "batch_max = 0\n", key: "sentilo.batch_max", say: "outside"},
		{name: "timeout", extra: "timeout = \"1ms\"\n", key: "sentilo.timeout", say: "outside"},
		{name: "duration as number", extra: "batch_wait = 1\n", key: "sentilo.batch_wait", say: "duration string"},
		{name: "same values", extra: "occupied_value = \"1\"\nfree_value = \"1\"\n", key: "sentilo.occupied_value", say: "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := sentiloConfig(t, dir, tc.extra)
			if tc.old != "" {
				text = strings.Replace(text, tc.old, tc.new, 1)
			}
			if tc.mode != 0 {
				if err := os.Chmod(filepath.Join(dir, "sentilo.token"), tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			_, err := parse(t, dir, text)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			if ce.Key != tc.key || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("err = %v (key %q); want key %q saying %q", err, ce.Key, tc.key, tc.say)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatal("the error shows the token")
			}
		})
	}
}

// TestOutputsRequired: [uplink] is optional when [sentilo] is set (no
// section, or one with TLS files only that [sentilo] inherits); a config
// with neither output is refused naming both keys.
func TestOutputsRequired(t *testing.T) {
	const uplinkTable = "[uplink]\nbrokers = [\"mqtts://broker.example.org:8883\"]\nbatch_max = 100\nbatch_wait = \"1s\"\n"
	const tlsOnly = "[uplink]\nca_file = \"@DIR@/ca.pem\"\ncert_file = \"@DIR@/client.pem\"\nkey_file = \"@DIR@/client.key\"\n"
	for _, tc := range []struct {
		name     string
		sentilo  bool
		edit     func(text, dir string) string
		mqtt     bool
		key, say string // want a ConfigError
	}{
		{name: "both", sentilo: true, mqtt: true},
		{name: "mqtt alone", mqtt: true},
		{name: "sentilo alone, uplink with TLS files only", sentilo: true,
			edit: func(text, dir string) string {
				return strings.Replace(text, "brokers = [\"mqtts://broker.example.org:8883\"]\n", "", 1)
			}},
		{name: "sentilo alone, no uplink section, own TLS files", sentilo: true,
			edit: func(text, dir string) string {
				text = strings.Replace(text, uplinkTable+strings.ReplaceAll(tlsOnly[len("[uplink]\n"):], "@DIR@", dir), "", 1)
				return text + strings.ReplaceAll("ca_file = \"@DIR@/ca.pem\"\ncert_file = \"@DIR@/client.pem\"\nkey_file = \"@DIR@/client.key\"\n", "@DIR@", dir)
			}},
		{name: "sentilo alone, no TLS files anywhere", sentilo: true,
			edit: func(text, dir string) string {
				return strings.Replace(text, uplinkTable+strings.ReplaceAll(tlsOnly[len("[uplink]\n"):], "@DIR@", dir), "", 1)
			},
			key: "sentilo.cert_file", say: "client certificate"},
		{name: "neither", edit: func(text, dir string) string {
			return strings.Replace(text, "brokers = [\"mqtts://broker.example.org:8883\"]\n", "", 1)
		},
			key: "uplink.brokers", say: "uplink.brokers (MQTT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := validConfig(t, dir)
			if tc.sentilo {
				text = sentiloConfig(t, dir, "")
			}
			if tc.edit != nil {
				before := text
				if text = tc.edit(text, dir); text == before {
					t.Fatal("the edit changed nothing: the fixture moved")
				}
			}
			cfg, err := parse(t, dir, text)
			if tc.key != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.say) {
					t.Fatalf("err = %v; want key %q saying %q", err, tc.key, tc.say)
				}
				if tc.key == "uplink.brokers" && !strings.Contains(err.Error(), "sentilo.url") {
					t.Fatalf("err = %v; want it to name sentilo.url too", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MQTT() != tc.mqtt || cfg.Sentilo.Enabled() != tc.sentilo {
				t.Fatalf("MQTT() = %v, Sentilo = %v; want %v, %v", cfg.MQTT(), cfg.Sentilo.Enabled(), tc.mqtt, tc.sentilo)
			}
			if tc.sentilo && (cfg.Sentilo.CertFile != filepath.Join(dir, "client.pem") || cfg.Sentilo.KeyFile != filepath.Join(dir, "client.key")) {
				t.Fatalf("sentilo TLS files: %+v", cfg.Sentilo)
			}
		})
	}
}

// TestSentiloCatalogLocations: the catalog body carries each bay's
// configured location and each zone's (an area by the mean of its
// corners) as Sentilo's "lat lng"; a sensor or zone without one has none;
// zones' counts are parking components; a zone named like a sensor is
// refused with [sentilo] (their ids would collide).
func TestSentiloCatalogLocations(t *testing.T) {
	dir := t.TempDir()
	text := sentiloConfig(t, dir, "")
	text = strings.Replace(text, `debounce = "200ms"`, "debounce = \"200ms\"\nlocation = [2.16991, 41.38712]", 1)
	text += `
[[sensors]]
name = "bay-18"
driver = "gpio-presence"
pin = "GPIO18"

[[zones]]
name = "north"
bays = ["bay-17"]
location = [2.17, 41.39]

[[zones]]
name = "south"
bays = ["bay-18"]
location = [[2.0, 41.0], [2.2, 41.0], [2.2, 41.2], [2.0, 41.2], [2.0, 41.0]]
`
	cfg, err := parse(t, dir, text)
	if err != nil {
		t.Fatal(err)
	}
	body, err := sentilo.CatalogBody(cfg.SentiloCatalog())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Sensors []struct{ Sensor, Location, ComponentType, Component, Unit string }
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	byID := map[string]string{}
	for _, s := range got.Sensors {
		byID[s.Sensor] = strings.Join([]string{s.Location, s.ComponentType, s.Component, s.Unit}, "|")
	}
	for id, want := range map[string]string{
		"gw-0042-bay-17-occupied":   "41.38712 2.16991|parking|gw-0042-bay-17|",
		"gw-0042-bay-18-occupied":   "|parking|gw-0042-bay-18|",
		"gw-0042-north-free":        "41.39 2.17|parking|gw-0042-north|count",
		"gw-0042-north-total":       "41.39 2.17|parking|gw-0042-north|count",
		"gw-0042-south-occupied":    "41.1 2.1|parking|gw-0042-south|count",
		"gw-0042-air-1-temperature": "|generic|gw-0042-air-1|Cel",
		"gw-0042-cityedge-dropped":  "|generic|gw-0042-cityedge|count",
	} {
		if byID[id] != want {
			t.Errorf("%s: %q, want %q", id, byID[id], want)
		}
	}
	if ids := cfg.Sentilo.IDMap(); ids[sentilo.Quantity{Sensor: "south", Quantity: "unknown"}] != "gw-0042-south-unknown" {
		t.Errorf("zone counts are not published series: %v", ids)
	}

	clash := strings.Replace(text, `name = "north"`, `name = "air-1"`, 1)
	_, err = parse(t, dir, clash)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "zones[0].name" || !strings.Contains(err.Error(), "collide") {
		t.Fatalf("zone named like a sensor: err = %v; want zones[0].name saying the ids collide", err)
	}
}
