package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/drivers/catalog"
	"github.com/pelletier/go-toml/v2"
)

var exampleFile = filepath.Join(repoRoot, "scripts", "cityedge.example.toml")

// exampleTable is one table of the example: its header, and its settings as
// written, in use ("key = v") or shown with their default ("#key = v").
type exampleTable struct {
	header   string // "agent", "sensors"
	line     int
	inUse    map[string]string
	defaults map[string]string
}

var (
	headerRE  = regexp.MustCompile(`^\[\[?([a-z_.]+)\]\]?\s*$`)
	settingRE = regexp.MustCompile(`^(#?)([a-z_]+) = (.*)$`)
)

func exampleTables(t *testing.T) []exampleTable {
	t.Helper()
	var out []exampleTable
	for i, l := range strings.Split(string(mustRead(t, exampleFile)), "\n") {
		if m := headerRE.FindStringSubmatch(l); m != nil {
			out = append(out, exampleTable{header: m[1], line: i + 1, inUse: map[string]string{}, defaults: map[string]string{}})
			continue
		}
		m := settingRE.FindStringSubmatch(l)
		if m == nil || len(out) == 0 {
			continue
		}
		tb := out[len(out)-1]
		if _, dup := tb.inUse[m[2]]; dup {
			t.Errorf("example line %d: %s appears twice in [%s]", i+1, m[2], tb.header)
		}
		if _, dup := tb.defaults[m[2]]; dup {
			t.Errorf("example line %d: %s appears twice in [%s]", i+1, m[2], tb.header)
		}
		if m[1] == "#" {
			tb.defaults[m[2]] = m[3]
		} else {
			tb.inUse[m[2]] = m[3]
		}
	}
	return out
}

// configKeys reads the toml keys of the agent's fixed tables from
// cmd/cityedge/internal/config/config.go.
func configKeys(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, "cmd", "cityedge", "internal", "config", "config.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{"AgentConfig": "agent", "BufferConfig": "buffer", "UplinkConfig": "uplink"}
	out := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || tables[ts.Name.Name] == "" {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, fld := range st.Fields.List {
			if fld.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(fld.Tag.Value)
			key, _, _ := strings.Cut(reflect.StructTag(tag).Get("toml"), ",")
			if key != "" && key != "-" {
				out[tables[ts.Name.Name]] = append(out[tables[ts.Name.Name]], key)
			}
		}
		return false
	})
	if len(out) != 3 {
		t.Fatalf("found the tables %v in config.go, want agent, buffer and uplink", out)
	}
	return out
}

// TestExampleCoversEverything: every key of [agent], [buffer] and [uplink]
// and one sensor per driver in the catalog, each with every option.
func TestExampleCoversEverything(t *testing.T) {
	tables := exampleTables(t)
	byHeader := map[string]exampleTable{}
	var sensors []exampleTable
	for _, tb := range tables {
		if tb.header == "sensors" {
			sensors = append(sensors, tb)
		} else {
			byHeader[tb.header] = tb
		}
	}
	for table, keys := range configKeys(t) {
		tb, ok := byHeader[table]
		if !ok {
			t.Errorf("the example has no [%s] table", table)
			continue
		}
		for _, k := range keys {
			_, a := tb.inUse[k]
			_, b := tb.defaults[k]
			if !a && !b {
				t.Errorf("[%s] %s is not in the example", table, k)
			}
		}
	}

	// The default of pull depends on active: the example shows the value it
	// takes with the default active = "low".
	derived := map[string]bool{"gpio-presence.pull": true}
	for _, name := range catalog.Names() {
		drv, _ := catalog.Lookup(name)
		var tb *exampleTable
		for i := range sensors {
			if strings.Trim(sensors[i].inUse["driver"], `"`) == name {
				tb = &sensors[i]
				break
			}
		}
		if tb == nil {
			t.Errorf("no [[sensors]] example for driver %s (%s)", name, drv.Chips)
			continue
		}
		common := []string{"name", "driver", "interval"}
		if drv.Kind == catalog.I2C {
			common = append(common, "bus", "address")
		} else {
			common = append(common, "pin")
		}
		for _, k := range common {
			_, a := tb.inUse[k]
			_, b := tb.defaults[k]
			if !a && !b {
				t.Errorf("%s example (line %d) lacks %s", name, tb.line, k)
			}
		}
		if a, ok := tb.defaults["address"]; ok && a != fmt.Sprintf("0x%02X", drv.Addrs[0]) {
			t.Errorf("%s example shows #address = %s, but the default is %#02x", name, a, drv.Addrs[0])
		}
		if drv.Options == nil || drv.Options() == nil {
			continue
		}
		typ := reflect.TypeOf(drv.Options()).Elem()
		for i := 0; i < typ.NumField(); i++ {
			k, _, _ := strings.Cut(typ.Field(i).Tag.Get("toml"), ",")
			_, inUse := tb.inUse[k]
			def, shown := tb.defaults[k]
			switch {
			case !inUse && !shown:
				t.Errorf("%s example (line %d) does not show option %s", name, tb.line, k)
			case shown && !derived[name+"."+k]:
				// "#key = value" claims value is the default: decode it
				// over the defaults and nothing may change.
				got := drv.Options()
				if err := toml.Unmarshal([]byte(k+" = "+def), got); err != nil {
					t.Errorf("%s example: #%s = %s: %v", name, k, def, err)
				} else if want := drv.Options(); !reflect.DeepEqual(got, want) {
					t.Errorf("%s example: #%s = %s is not the default (%+v)", name, k, def, want)
				}
			}
		}
	}
}

// TestExampleAccepted: the agent itself accepts the example, as shipped and
// with every "#key = default" line switched on. --enroll parses and checks
// the whole configuration without hardware or network.
func TestExampleAccepted(t *testing.T) {
	bin := agent(t)
	ex := string(mustRead(t, exampleFile))
	uncomment := regexp.MustCompile(`(?m)^#([a-z_]+ = )`)
	for _, tc := range []struct {
		name string
		text string
	}{
		{"as shipped", ex},
		{"every default switched on", uncomment.ReplaceAllString(ex, "$1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			text := strings.ReplaceAll(tc.text, `"/etc/cityedge/`, `"`+dir+`/`)
			cfg := filepath.Join(dir, "cityedge.toml")
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := tryCmd(nil, nil, bin, "--config", cfg, "--enroll", "--csr", filepath.Join(dir, "gw.csr"))
			if err != nil {
				t.Fatalf("cityedge rejects the example (%s): %v\n%s", tc.name, err, out)
			}
			if !strings.Contains(string(mustRead(t, filepath.Join(dir, "gw.csr"))), "CERTIFICATE REQUEST") {
				t.Errorf("no CSR written")
			}
		})
	}
}
