package diagnose

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
)

// TestConfigFailedListsEveryError: a configuration with several problems
// gives one FAIL line per problem naming file:line and key, and --json is
// valid JSON carrying them.
func TestConfigFailedListsEveryError(t *testing.T) {
	text := "[agent]\nid = \"gw-1\"\nsitte = \"x\"\n[uplink]\nbrokers = [\"mqtts://b:8883\"]\nbatch_max = 1e12\n" +
		"[[sensors]]\nname = \"a\"\ndriver = \"bme280\"\naddress = 0x80\n"
	_, err := config.Parse("c.toml", []byte(text))
	if err == nil {
		t.Fatal("accepted")
	}
	var out bytes.Buffer
	ConfigFailed("c.toml", err, Options{}, &out)
	for _, want := range []string{
		"FAIL  config c.toml:3   agent.sitte: unknown key \"agent.sitte\": did you mean `site`?",
		"FAIL  config c.toml:6   uplink.batch_max: must be a whole number",
		"FAIL  config c.toml:10  sensors[0].address",
		"0 passed, 0 warnings, 3 failed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	ConfigFailed("c.toml", err, Options{JSON: true}, &out)
	var r struct {
		OK     bool    `json:"ok"`
		Checks []Check `json:"checks"`
		Errors []struct {
			Line int    `json:"line"`
			Key  string `json:"key"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if r.OK || len(r.Checks) != 3 || len(r.Errors) != 3 || r.Errors[0].Key != "agent.sitte" || r.Errors[0].Line != 3 {
		t.Errorf("JSON report = %+v", r)
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 brokers", 1: "1 broker", 2: "2 brokers"} {
		if got := plural(n, "broker"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestFormatValue: numbers at the precision they came with, tesla in µT.
func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		v    drivers.Value
		want string
	}{
		{drivers.NumberAt(drivers.Pressure, drivers.UnitPascal, 101322.5546875, 2), "pressure=101322.55 Pa"},
		{drivers.Number(drivers.X, drivers.UnitTesla, 22e-6), "x=22 µT"},
		{drivers.Number(drivers.X, drivers.UnitTesla, -4.5e-6), "x=-4.5 µT"},
		{drivers.Number32(drivers.PM2_5, drivers.UnitUgM3, 13.23), "pm2_5=13.23 ug/m3"},
		{drivers.Number(drivers.CO2, drivers.UnitPPM, 506), "co2=506 ppm"},
		{drivers.Flag("occupied", true), "occupied=true"},
	} {
		if got := formatValue(c.v); got != c.want {
			t.Errorf("formatValue(%+v) = %q, want %q", c.v, got, c.want)
		}
	}
}

// TestLiveSensorStarting: a sensor of a freshly started agent is
// `starting` until its first interval has passed; after that it FAILs, and
// every FAIL carries a reason. A GPIO detector is located by its pin.
func TestLiveSensorStarting(t *testing.T) {
	bay := config.SensorConfig{Name: "bay-17", Driver: "gpio-presence", Pin: "GPIO17", Interval: 60 * time.Second}
	for _, c := range []struct {
		name    string
		st      agent.SensorState
		up      time.Duration
		verdict string
		says    []string
	}{
		{"fresh", agent.SensorState{Open: true}, 2 * time.Second, Warn, []string{"starting", "pin GPIO17"}},
		{"fresh, not open yet", agent.SensorState{}, 2 * time.Second, Warn, []string{"starting", "pin GPIO17"}},
		{"silent past its interval", agent.SensorState{Open: true}, 2 * time.Minute, Fail, []string{"no reading and no error", "pin GPIO17"}},
		{"failing", agent.SensorState{Errors: 3, LastError: "pin busy"}, 5 * time.Second, Fail, []string{"pin busy", "cannot be opened"}},
	} {
		v, d := liveSensorWithoutReading(bay, c.st, c.up)
		if v != c.verdict {
			t.Errorf("%s: verdict %s, want %s (%s)", c.name, v, c.verdict, d)
		}
		for _, w := range c.says {
			if !strings.Contains(d, w) {
				t.Errorf("%s: %q lacks %q", c.name, d, w)
			}
		}
		if v == Fail && strings.HasSuffix(d, ": ") {
			t.Errorf("%s: FAIL without a reason: %q", c.name, d)
		}
	}
}

// TestStateDirAndDisk: a state_dir that is a file or cannot be created
// FAILs naming agent.state_dir; a missing one under an existing parent
// passes (the agent creates it) and free space is read on that parent.
func TestStateDirAndDisk(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, c := range []struct {
		state, verdict, says string
	}{
		{file, Fail, "is a file"},
		{filepath.Join(dir, "no", "such"), Fail, "does not exist either"},
		{filepath.Join(file, "sub"), Fail, "not a directory"},
		{filepath.Join(dir, "new"), Pass, "creates it"},
		{dir, Pass, "writable"},
	} {
		cfg := parseWithStateDir(t, c.state)
		r := &report{}
		diagnoseStateDir(cfg, r)
		if got := r.checks[0]; got.Verdict != c.verdict || !strings.Contains(got.Detail, c.says) ||
			(c.verdict == Fail && !strings.Contains(got.Detail, "agent.state_dir")) {
			t.Errorf("state_dir %s: %+v, want %s saying %q", c.state, got, c.verdict, c.says)
		}
	}
	if got := nearestExisting(filepath.Join(dir, "a", "b")); got != dir {
		t.Errorf("nearestExisting = %s, want %s", got, dir)
	}
	if got := nearestExisting(filepath.Join(file, "x")); got != dir {
		t.Errorf("nearestExisting past a file = %s, want %s", got, dir)
	}
}

func parseWithStateDir(t *testing.T, stateDir string) *config.Config {
	t.Helper()
	text := "[agent]\nid = \"gw-1\"\nstate_dir = \"" + stateDir + "\"\n[uplink]\nbrokers = [\"mqtts://b:8883\"]\n" +
		"[[sensors]]\nname = \"a\"\ndriver = \"bme280\"\n"
	cfg, err := config.Parse("c.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSummaryPlural: the closing line counts in words a person would use.
func TestSummaryPlural(t *testing.T) {
	var b bytes.Buffer
	printReport(&b, []Check{{Area: "a", Name: "b", Verdict: Warn, Detail: "d"}}, false)
	if !strings.Contains(b.String(), "0 passed, 1 warning, 0 failed") {
		t.Errorf("summary %q", b.String())
	}
}
