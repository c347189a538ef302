package diagnose

import (
	"strings"
	"testing"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers/catalog"
)

func TestScanVerdict(t *testing.T) {
	cfg := []config.SensorConfig{{Name: "air-1", Driver: "bme280", Address: 0x76}, {Name: "th-1", Driver: "sht3x", Address: 0x44}}
	withSign := append(cfg[:2:2], config.SensorConfig{Name: "corner", Driver: "sign ht16k33", Address: 0x70})
	cases := []struct {
		name    string
		found   []catalog.Found
		verdict string
		says    []string
	}{
		{"all present", []catalog.Found{{Addr: 0x44, Drivers: []string{"sht3x", "sht4x"}}, {Addr: 0x76, Drivers: []string{"bme280"}}}, Pass,
			[]string{"0x44 could be sht3x/sht4x (configured: th-1)"}},
		{"extra device", []catalog.Found{{Addr: 0x44}, {Addr: 0x76}, {Addr: 0x23, Drivers: []string{"bh1750"}}}, Warn,
			[]string{"0x23 could be bh1750 (present but not configured)"}},
		{"silent sensor", []catalog.Found{{Addr: 0x76}}, Fail, []string{"0x44 SILENT (configured: th-1, sht3x)"}},
		{"empty bus", nil, Fail, []string{"0x76 SILENT", "0x44 SILENT"}},
		{"a sign on the bus", []catalog.Found{{Addr: 0x44}, {Addr: 0x76}, {Addr: 0x70}}, Pass, []string{"(configured: corner)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := cfg
			if c.name == "a sign on the bus" {
				conf = withSign
			}
			v, d := scanVerdict(c.found, conf)
			if v != c.verdict {
				t.Errorf("verdict %s, want %s (%s)", v, c.verdict, d)
			}
			for _, s := range c.says {
				if !strings.Contains(d, s) {
					t.Errorf("detail %q lacks %q", d, s)
				}
			}
		})
	}
}
