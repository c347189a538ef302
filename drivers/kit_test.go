package drivers_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestChipImports keeps the driver kit's walls (drivers/README.md): a chip
// package imports only the standard library, periph, clockwork,
// drivers/sensirion and drivers/internal/wait; no production package but
// the catalog imports a simulator.
func TestChipImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go tool not in PATH")
	}
	const mod = "github.com/cityedge/cityedge/"
	out, err := exec.Command(goTool, "list", "-f", `{{.ImportPath}} {{join .Imports ","}}`, mod+"drivers/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := func(imp string) bool {
		switch {
		case !strings.Contains(strings.Split(imp, "/")[0], "."):
			return true // standard library
		case strings.HasPrefix(imp, "periph.io/x/conn/"), imp == "github.com/jonboulle/clockwork",
			imp == mod+"drivers/sensirion", imp == mod+"drivers/internal/wait":
			return true
		}
		return false
	}
	chips := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imps, _ := strings.Cut(line, " ")
		rel := strings.TrimPrefix(pkg, mod+"drivers/")
		isSim := strings.HasSuffix(rel, "sim")
		for _, imp := range strings.Split(imps, ",") {
			if strings.HasSuffix(imp, "sim") && strings.HasPrefix(imp, mod) && imp != mod+"drivers/sim" &&
				!isSim && rel != "catalog" && !strings.HasPrefix(rel, "internal/") {
				t.Errorf("%s imports the simulator %s", pkg, imp)
			}
		}
		if rel == pkg || isSim || strings.Contains(rel, "/") || rel == "catalog" {
			continue // drivers itself, simulators, internal packages, the catalog
		}
		chips++
		for _, imp := range strings.Split(imps, ",") {
			if imp != "" && !allowed(imp) {
				t.Errorf("chip package %s imports %s", pkg, imp)
			}
		}
	}
	if chips < 5 {
		t.Fatalf("only %d chip packages seen: the check saw nothing", chips)
	}
}
