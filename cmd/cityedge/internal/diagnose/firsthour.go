package diagnose

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/drivers/catalog"
)

// ConfigFailed is the report of a configuration file that does not load:
// every problem in it as a FAIL line naming file:line and key, as text or
// as JSON (which then carries the problems under "errors" too). The command
// exits 2 after it.
func ConfigFailed(path string, err error, o Options, stdout io.Writer) {
	all := config.AllErrors(err)
	var checks []Check
	type jsonErr struct {
		File string `json:"file"`
		Line int    `json:"line,omitempty"`
		Key  string `json:"key,omitempty"`
		Msg  string `json:"message"`
	}
	var errs []jsonErr
	for _, e := range all {
		where := e.File
		if e.Line > 0 {
			where += ":" + strconv.Itoa(e.Line)
		}
		detail := e.Msg
		if e.Key != "" {
			detail = e.Key + ": " + e.Msg
		}
		checks = append(checks, Check{Area: "config", Name: where, Verdict: Fail, Detail: detail})
		errs = append(errs, jsonErr{File: e.File, Line: e.Line, Key: e.Key, Msg: e.Msg})
	}
	if len(all) == 0 {
		checks = append(checks, Check{Area: "config", Name: path, Verdict: Fail, Detail: err.Error()})
		errs = append(errs, jsonErr{File: path, Msg: err.Error()})
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"ok": false, "config": path, "time": time.Now().UTC(), "checks": checks, "errors": errs})
		return
	}
	printReport(stdout, checks, isTerminal(stdout))
}

// plural writes a count with its noun: "1 broker", "2 brokers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// diagnoseStateDir FAILs an agent.state_dir the agent could not use or
// create; it changes nothing.
func diagnoseStateDir(cfg *config.Config, r *report) {
	dir := cfg.Agent.StateDir
	if err := agent.StateDirProblem(cfg); err != nil {
		var ce *config.ConfigError
		if errors.As(err, &ce) {
			r.add("state", dir, Fail, "%s: %s", ce.Key, ce.Msg)
			return
		}
		r.add("state", dir, Fail, "agent.state_dir: %v", err)
		return
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		r.add("state", dir, Pass, "does not exist yet: the agent creates it (mode 0700) at its first start")
		return
	}
	if problems := serviceAccess(dir); len(problems) > 0 {
		for _, p := range problems {
			r.add("state", dir, Fail, "%s", p)
		}
		return
	}
	r.add("state", dir, Pass, "writable directory")
}

// nearestExisting is dir or its nearest parent that exists: free space
// before the first start is that of the file system state_dir will be on.
func nearestExisting(dir string) string {
	d := filepath.Clean(dir)
	for {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			return d
		}
		d = p
	}
}

// formatValue writes a reading for people: booleans as true/false, numbers
// in their shortest form at the precision they came with (a float32 source
// at float32 precision), tesla in µT.
func formatValue(v drivers.Value) string {
	if v.IsBool {
		return fmt.Sprintf("%s=%t", v.Quantity, v.Bool)
	}
	num, unit := v.Num, v.Unit
	if unit == drivers.UnitTesla && math.Abs(num) < 1e-2 {
		num, unit = math.Round(num*1e8)/100, "µT" // 0.01 µT is below any magnetometer's noise
	}
	bits := 64
	if v.Float32 {
		bits = 32
	}
	s := strconv.FormatFloat(num, 'f', -1, bits)
	if math.Abs(num) >= 1e9 || (num != 0 && math.Abs(num) < 1e-4) {
		s = strconv.FormatFloat(num, 'g', -1, bits)
	}
	return fmt.Sprintf("%s=%s %s", v.Quantity, s, unit)
}

// location is where a sensor is wired, from the running agent when it
// opened the sensor, otherwise from the configuration: a GPIO detector's
// pin (DECISIONS 16), an I2C chip's bus and address.
func location(s config.SensorConfig, where string) string {
	switch d, _ := catalog.Lookup(s.Driver); {
	case where != "":
	case d.Kind == catalog.GPIO:
		where = "pin " + s.Pin
	default:
		where = fmt.Sprintf("bus %s address %#02x", busLabel(s.Bus), s.Address)
	}
	return withLocation(s, where) // a configured [lon, lat] beside the pin (DECISIONS 16)
}

// sensorStartGrace is how long past its first interval a sensor of a freshly
// started agent may go without a reading before it is a FAIL.
const sensorStartGrace = 10 * time.Second

// liveSensor judges one sensor of the running agent that has not delivered
// a reading yet: `starting` while its first interval has not passed, a FAIL
// with a reason afterwards.
func liveSensorWithoutReading(s config.SensorConfig, st agent.SensorState, uptime time.Duration) (string, string) {
	where := location(s, st.Where)
	if st.LastError == "" && st.Errors == 0 && uptime < s.Interval+sensorStartGrace {
		return Warn, fmt.Sprintf("%s %s: starting: first reading due within %v of the start (up %v)", s.Driver, where, s.Interval, uptime.Round(time.Second))
	}
	why := st.LastError
	if why == "" {
		why = fmt.Sprintf("no reading and no error in %v (interval %v): the sensor step may be stuck", uptime.Round(time.Second), s.Interval)
	}
	if !st.Open {
		return Fail, fmt.Sprintf("%s %s: cannot be opened: %s", s.Driver, where, why)
	}
	return Fail, fmt.Sprintf("%s %s: not delivering readings; last error: %s", s.Driver, where, why)
}

// withoutInventory drops the host's inventory from a hardware error: the
// report lists it once, as "hardware host".
func withoutInventory(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "; this host has: ")
	return msg
}
