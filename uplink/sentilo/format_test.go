package sentilo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFormatTime(t *testing.T) {
	cet := time.FixedZone("CEST", 2*3600)
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 6, 12, 10, 0, 0, 0, time.UTC), "12/06/2026T10:00:00+0000"},
		{time.Date(2026, 6, 12, 12, 0, 5, 999_999_999, cet), "12/06/2026T10:00:05+0000"}, // UTC, truncated
		{time.Date(2027, 1, 1, 0, 59, 59, 0, cet), "31/12/2026T22:59:59+0000"},
		{time.Date(999, 3, 4, 5, 6, 7, 0, time.UTC), "04/03/0999T05:06:07+0000"}, // always 4 digits
	} {
		if got := FormatTime(tc.in); got != tc.want {
			t.Errorf("FormatTime(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if back, err := time.Parse(TimestampLayout, FormatTime(tc.in)); err != nil || !back.Equal(tc.in.Truncate(time.Second)) {
			t.Errorf("%q parses back to %v, %v", FormatTime(tc.in), back, err)
		}
	}
}

func TestFormatNumber(t *testing.T) {
	tenth, fifth := 0.1, 0.2 // not constants: Go would fold them to exactly 0.3
	for _, tc := range []struct {
		v    float64
		f32  bool
		want string
	}{
		{21.5, false, "21.5"},
		{tenth + fifth, false, "0.30000000000000004"},
		{float64(float32(12.3)), true, "12.3"},
		{float64(float32(12.3)), false, "12.300000190734863"},
		{1e6, false, "1000000"},
		{-0.000125, false, "-0.000125"},
		{101325, false, "101325"},
	} {
		got := FormatNumber(tc.v, tc.f32)
		if got != tc.want {
			t.Errorf("FormatNumber(%v, %v) = %q, want %q", tc.v, tc.f32, got, tc.want)
		}
	}
}

func TestFormatLocation(t *testing.T) {
	if got := FormatLocation([2]float64{2.17, 41.38}); got != "41.38 2.17" {
		t.Errorf("FormatLocation([lon 2.17, lat 41.38]) = %q, want latitude first", got)
	}
}

func TestDefaultID(t *testing.T) {
	for _, tc := range [][4]string{
		{"gw-01", "bay-3", "occupied", "gw-01-bay-3-occupied"},
		{"gw.01", "env 1", "pm2_5", "gw_01-env_1-pm2_5"},
		{"gw", "café/1", "x", "gw-caf___1-x"}, // é is two bytes
	} {
		if got := DefaultID(tc[0], tc[1], tc[2]); got != tc[3] {
			t.Errorf("DefaultID%q = %q, want %q", tc[:3], got, tc[3])
		}
	}
}

func TestMapIDs(t *testing.T) {
	qs := []Quantity{{"env.1", "temperature"}, {"env_1", "temperature"}, {"bay", "occupied"}}
	if _, err := MapIDs("gw", qs, nil); err == nil || !strings.Contains(err.Error(), `"env.1/temperature" and "env_1/temperature"`) {
		t.Fatalf("collision: err = %v, want both named", err)
	}
	ids, err := MapIDs("gw", qs, map[string]string{"env.1/temperature": "BCN-T-001"})
	if err != nil {
		t.Fatal(err)
	}
	if ids[qs[0]] != "BCN-T-001" || ids[qs[1]] != "gw-env_1-temperature" || ids[qs[2]] != "gw-bay-occupied" {
		t.Errorf("ids = %v", ids)
	}
	for _, tc := range []struct {
		over map[string]string
		want string
	}{
		{map[string]string{"nope/temperature": "X"}, `key "nope/temperature" names no configured sensor quantity`},
		{map[string]string{"bay": "X"}, `expected "sensor/quantity"`},
		{map[string]string{"bay/occupied": "bad id"}, `"bay/occupied" = "bad id"`},
		{map[string]string{"bay/occupied": "gw-env_1-temperature", "env.1/temperature": "A"}, `"env_1/temperature" and "bay/occupied"`},
	} {
		_, err := MapIDs("gw", qs, tc.over)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "sentilo.ids") {
			t.Errorf("MapIDs(%v): err = %v, want %q", tc.over, err, tc.want)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := ReadToken(write("ok", "abc123\n", 0o600)); err != nil || tok != "abc123" {
		t.Fatalf("ReadToken = %q, %v", tok, err)
	}
	for _, tc := range []struct{ path, want string }{
		{write("world", "abc", 0o644), "mode 0644 lets group or others read the token"},
		{write("group", "abc", 0o640), "mode 0640"},
		{write("empty", " \n", 0o600), "empty"},
		{write("space", "a b", 0o600), "one line"},
		{filepath.Join(dir, "missing"), "does not exist"},
		{"", "required"},
	} {
		_, err := ReadToken(tc.path)
		if err == nil || !strings.HasPrefix(err.Error(), "sentilo.token_file") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadToken(%q): err = %v, want sentilo.token_file ... %q", tc.path, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "abc") {
			t.Errorf("error shows the token: %v", err)
		}
	}
}

func TestValidate(t *testing.T) {
	base := Config{URL: "https://sentilo.example:8443/api", Provider: "p", Token: "t"}.WithDefaults()
	base.TLS = newPKI(t).client
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.URL = "http://sentilo.example" }, "sentilo.url: \"http://sentilo.example\": only https://"},
		{func(c *Config) { c.URL = "" }, "sentilo.url: required"},
		{func(c *Config) { c.URL = "https://" }, "has no host"},
		{func(c *Config) { c.URL = "https://u:p@h" }, "no user"},
		{func(c *Config) { c.Provider = "bad provider" }, "sentilo.provider"},
		{func(c *Config) { c.BatchMax = 0 }, "sentilo.batch_max"},
		{func(c *Config) { c.Timeout = time.Millisecond }, "sentilo.timeout"},
		{func(c *Config) { c.FreeValue = c.OccupiedValue }, "sentilo.occupied_value and sentilo.free_value"},
	} {
		c := base
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}
