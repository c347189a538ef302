package main

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxExposure is the highest `systemd-analyze security` score the unit may
// have (0 is locked down, 10 is unprotected).
const maxExposure = 2.0

// unitFile is the unit as shipped.
var unitFile = filepath.Join(repoRoot, "scripts", "systemd", "cityedge.service")

// parseUnit reads a unit file into key → values (in order), prefixed with
// the section: "Service.ExecStart".
func parseUnit(t *testing.T, p string) map[string][]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: not a key=value line: %q", p, l)
			}
			if strings.HasSuffix(v, "\\") {
				t.Fatalf("%s: continuation lines are not expected here: %q", p, l)
			}
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of key, failing when it is absent or repeated.
func one(t *testing.T, u map[string][]string, key string) string {
	t.Helper()
	v := u[key]
	if len(v) != 1 {
		t.Fatalf("unit: %s has %d values %q, want exactly one", key, len(v), v)
	}
	return v[0]
}

// testableUnit copies the unit into a temporary directory with ExecStart
// pointing at an executable that exists here, since verify checks that.
func testableUnit(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "cityedge")
	copyFile(t, "/bin/sh", exe, 0o755)
	const want = "ExecStart=/usr/bin/cityedge "
	if !strings.Contains(string(data), "\n"+want) {
		t.Fatalf("%s has no line starting %q", unitFile, want)
	}
	data = []byte(strings.Replace(string(data), "\n"+want, "\nExecStart="+exe+" ", 1))
	data = []byte(strings.Replace(string(data), "\nExecStopPost=-/usr/bin/cityedge ", "\nExecStopPost=-"+exe+" ", 1))
	p := filepath.Join(dir, "cityedge.service")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnitVerifies(t *testing.T) {
	sa := need(t, "systemd-analyze", "systemd", "SYSTEMD")
	p := testableUnit(t)
	out, err := tryCmd(nil, nil, sa, "verify", "--man=no", p)
	// verify reports unknown keys, bad values and missing executables as
	// lines on its output, some without failing: any line about the unit
	// is a defect.
	if err != nil || strings.Contains(out, "cityedge.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestUnitExposure(t *testing.T) {
	sa := need(t, "systemd-analyze", "systemd", "SYSTEMD")
	p := testableUnit(t)
	out, err := tryCmd(nil, nil, sa, "security", "--offline=true", "--no-pager", p)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no \"Overall exposure level\" line in:\n%s", out)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f (limit %.1f)", score, maxExposure)
	if score > maxExposure {
		t.Errorf("exposure %.1f is above %.1f; the findings:\n%s", score, maxExposure, out)
	}
}

// TestUnitSettings pins the settings the agent's behaviour depends on, and
// the ones whose loss would not show in the exposure score.
func TestUnitSettings(t *testing.T) {
	u := parseUnit(t, unitFile)
	for key, want := range map[string]string{
		"Service.Type":                     "notify",
		"Service.NotifyAccess":             "main",
		"Service.Restart":                  "on-failure",
		"Service.RestartPreventExitStatus": "2", // bad configuration: exitUsage in cmd/cityedge
		"Service.ExecReload":               "/bin/kill -HUP $MAINPID",
		"Service.User":                     "cityedge",
		"Service.Group":                    "cityedge",
		"Service.StateDirectoryMode":       "0700",
		"Service.UMask":                    "0077",
		"Service.DevicePolicy":             "closed",
		"Service.ProtectSystem":            "strict",
		"Service.PrivateNetwork":           "no",
		"Service.CapabilityBoundingSet":    "",
		"Service.AmbientCapabilities":      "",
		"Service.NoNewPrivileges":          "yes",
		"Service.MemoryDenyWriteExecute":   "yes",
		"Service.SystemCallArchitectures":  "native",
		"Service.LimitCORE":                "0",
		"Install.WantedBy":                 "multi-user.target",
	} {
		if got := one(t, u, key); got != want {
			t.Errorf("%s=%s, want %s", key, got, want)
		}
	}
	for _, key := range []string{"Service.WatchdogSec", "Service.MemoryMax", "Service.TimeoutStopSec", "Service.RestartSec"} {
		one(t, u, key)
	}
	devices := strings.Join(u["Service.DeviceAllow"], ",")
	if devices != "char-i2c rw,char-gpiochip rw" {
		// Paths with globs (/dev/i2c-*) are not matched by systemd; the
		// device groups of /proc/devices are (systemd.resource-control(5)).
		t.Errorf("DeviceAllow=%s, want the i2c and gpiochip device groups read-write", devices)
	}
	if fams := one(t, u, "Service.RestrictAddressFamilies"); fams != "AF_UNIX AF_INET AF_INET6" {
		t.Errorf("RestrictAddressFamilies=%s: the agent needs unix (diagnose socket) and IPv4/IPv6 (brokers), nothing else", fams)
	}
	if ps, ok := u["Service.ProcSubset"]; ok && ps[0] == "pid" {
		// periph's host detection reads /proc/cpuinfo and /proc/device-tree.
		t.Errorf("ProcSubset=pid hides /proc/cpuinfo and /proc/device-tree, which periph.io/x/host needs to recognise the board")
	}
	if _, ok := u["Service.IPAddressDeny"]; ok {
		t.Errorf("IPAddressDeny= is set: brokers can be anywhere")
	}
	// DeviceAllow=char-i2c resolves when the unit starts: i2c-dev must be
	// loaded first.
	if !contains(u["Unit.Wants"], "modprobe@i2c_dev.service") || !contains(u["Unit.After"], "modprobe@i2c_dev.service") {
		t.Errorf("Wants=/After=modprobe@i2c_dev.service missing: char-i2c would not resolve when i2c-dev loads late")
	}
	// The groups the udev rule gives the devices to are the ones the
	// service runs with.
	rules, err := os.ReadFile(filepath.Join(repoRoot, "scripts", "systemd", "60-cityedge.rules"))
	if err != nil {
		t.Fatal(err)
	}
	var ruleGroups []string
	for _, m := range regexp.MustCompile(`GROUP="([^"]+)"`).FindAllStringSubmatch(string(rules), -1) {
		ruleGroups = append(ruleGroups, m[1])
	}
	if got, want := strings.Join(ruleGroups, " "), one(t, u, "Service.SupplementaryGroups"); got != want {
		t.Errorf("60-cityedge.rules gives devices to %q, the unit runs with SupplementaryGroups=%s", got, want)
	}
}

// TestUnitLetsAgentReadClock: the agent must see whether the kernel's clock
// is synchronised (adjtimex read-only) under the shipped unit, and must never
// be able to set it. ProtectClock=yes or a deny list that ends with @clock
// (inside @privileged) denied would blind it: every boot's readings would be
// held for clock.hold.
func TestUnitLetsAgentReadClock(t *testing.T) {
	u := parseUnit(t, unitFile)
	if pc, ok := u["Service.ProtectClock"]; ok && pc[len(pc)-1] == "yes" {
		t.Error("ProtectClock=yes denies even a read-only adjtimex: the agent could never see a synced clock")
	}
	// systemd applies SystemCallFilter= lines in order: the last line that
	// names a call decides. Allow-lines after a ~deny line re-allow.
	allowed := map[string]bool{"adjtimex": false, "clock_adjtime": false}
	for _, line := range u["Service.SystemCallFilter"] {
		deny := strings.HasPrefix(line, "~")
		for _, f := range strings.Fields(strings.TrimPrefix(line, "~")) {
			switch f {
			case "@privileged", "@clock", "adjtimex", "clock_adjtime":
				for call := range allowed {
					if f == call || f[0] == '@' {
						allowed[call] = !deny
					}
				}
			}
		}
	}
	for call, ok := range allowed {
		if !ok {
			t.Errorf("SystemCallFilter= leaves %s denied: the agent cannot read the clock's sync state", call)
		}
	}
	if caps := one(t, u, "Service.CapabilityBoundingSet"); strings.Contains(caps, "CAP_SYS_TIME") || caps != "" {
		t.Errorf("CapabilityBoundingSet=%s: must stay empty so the kernel refuses any clock write", caps)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		for _, f := range strings.Fields(v) {
			if f == s {
				return true
			}
		}
	}
	return false
}

// agentDefaults reads the agent's built-in paths from cmd/cityedge/internal/config.
func agentDefaults(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, "cmd", "cityedge", "internal", "config", "config.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					out[name.Name], _ = strconv.Unquote(lit.Value)
				}
			}
		}
		return true
	})
	return out
}

// TestUnitMatchesPackage holds the unit, the package layout, the example
// configuration and the agent's defaults to the same paths.
func TestUnitMatchesPackage(t *testing.T) {
	u := parseUnit(t, unitFile)
	exec := strings.Fields(one(t, u, "Service.ExecStart"))
	if len(exec) != 3 || exec[1] != "--config" {
		t.Fatalf("ExecStart=%s: want <binary> --config <file>", strings.Join(exec, " "))
	}
	binary, config := exec[0], exec[2]
	// ExecStopPost= blanks the parking signs with the same binary and file,
	// ignoring its failure ("-").
	if post := one(t, u, "Service.ExecStopPost"); post != "-"+binary+" --config "+config+" --blank-signs" {
		t.Errorf("ExecStopPost=%s: want -%s --config %s --blank-signs", post, binary, config)
	}
	stateDir := "/var/lib/" + one(t, u, "Service.StateDirectory")
	confDir := "/etc/" + one(t, u, "Service.ConfigurationDirectory")
	one(t, u, "Service.RuntimeDirectory")

	src, err := readSources(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	files, conffiles := debContents([]byte("binary"), src)
	mode := map[string]int64{}
	for _, e := range files {
		if !e.dir {
			mode["/"+e.name] = e.mode
		}
	}
	if mode[binary] != 0o755 {
		t.Errorf("ExecStart runs %s; the package installs it with mode %o (0 = not at all)", binary, mode[binary])
	}
	if !contains(conffiles, config) {
		t.Errorf("ExecStart reads %s, which is not a conffile of the package (%v)", config, conffiles)
	}
	if path.Dir(config) != confDir {
		t.Errorf("the configuration %s is outside ConfigurationDirectory %s", config, confDir)
	}
	if mode["/"+unitPath] != 0o644 {
		t.Errorf("the package does not install the unit at /%s", unitPath)
	}

	def := agentDefaults(t)
	if def["DefaultPath"] != config {
		t.Errorf("the agent's default configuration is %q, the unit passes %q", def["DefaultPath"], config)
	}
	if def["defaultStateDir"] != stateDir {
		t.Errorf("the agent's default state_dir is %q, the unit's StateDirectory is %s", def["defaultStateDir"], stateDir)
	}

	// The example configuration keeps state and TLS files where the unit
	// lets the agent reach them.
	ex := string(src.example)
	if !strings.Contains(ex, `#state_dir = "`+stateDir+`"`) {
		t.Errorf("the example configuration does not show state_dir = %q", stateDir)
	}
	for _, key := range []string{"ca_file", "cert_file", "key_file"} {
		m := regexp.MustCompile(`(?m)^` + key + ` = "([^"]+)"`).FindStringSubmatch(ex)
		if m == nil {
			t.Errorf("the example configuration has no %s", key)
			continue
		}
		if path.Dir(m[1]) != confDir {
			t.Errorf("example %s = %q is outside %s", key, m[1], confDir)
		}
	}

	// The maintainer scripts create the state directory and account the
	// unit uses.
	for _, name := range []string{"postinst", "postrm"} {
		b, err := maintainerScripts.ReadFile("debian/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"state=" + stateDir + "\n", "user=" + one(t, u, "Service.User") + "\n"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not set %q", name, strings.TrimSpace(want))
			}
		}
	}
}
