package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cityedge/cityedge/"

// TestDependencyWalls keeps the architecture's walls standing: buffer,
// uplink, certs and drivers never import each other or any command, and the
// agent binary never links the demo's embedded broker.
func TestDependencyWalls(t *testing.T) {
	walls := map[string][]string{
		module + "buffer/...":  {"uplink", "certs", "drivers", "cmd"},
		module + "uplink/...":  {"buffer", "certs", "drivers", "cmd"},
		module + "certs/...":   {"buffer", "uplink", "drivers", "cmd"},
		module + "drivers/...": {"buffer", "uplink", "certs", "cmd"},
	}
	for pkgs, forbidden := range walls {
		out, err := exec.Command("go", "list", "-deps", pkgs).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkgs, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if pkgs == module+"uplink/..." && dep == module+"drivers" && !importsDrivers(t, module+"uplink") {
					continue // the one exception: uplink/senml encodes drivers.Reading directly (one reading model)
				}
				if strings.HasPrefix(dep, module+f+"/") || dep == module+f {
					t.Errorf("%s depends on %s", pkgs, dep)
				}
			}
		}
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "mochi-mqtt") || strings.HasPrefix(dep, module+"cmd/devbroker") || strings.HasPrefix(dep, module+"scripts") {
			t.Errorf("the agent binary links %s", dep)
		}
	}
}

// importsDrivers reports whether pkg depends on the drivers package.
func importsDrivers(t *testing.T, pkg string) bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Contains(string(out), module+"drivers\n")
}
