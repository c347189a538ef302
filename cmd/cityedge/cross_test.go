package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

type crossTarget struct {
	name, goarch, goarm string
	machine             elf.Machine
	class               elf.Class
	qemu                []string // how to run it here; nil = natively
}

var crossTargets = []crossTarget{
	// -cpu pins the oldest core each build promises to run on.
	{"armv6", "arm", "6", elf.EM_ARM, elf.ELFCLASS32, []string{"qemu-arm-static", "-cpu", "arm1176"}},
	{"armv7", "arm", "7", elf.EM_ARM, elf.ELFCLASS32, []string{"qemu-arm-static", "-cpu", "cortex-a7"}},
	{"arm64", "arm64", "", elf.EM_AARCH64, elf.ELFCLASS64, []string{"qemu-aarch64-static"}},
	{"amd64", "amd64", "", elf.EM_X86_64, elf.ELFCLASS64, nil},
}

// needQemu skips (or fails under CITYEDGE_REQUIRE_QEMU=1) when qemu-user is
// missing.
func needQemu(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: apt-get install qemu-user-static", tool)
	if os.Getenv("CITYEDGE_REQUIRE_QEMU") == "1" {
		t.Fatal(msg + " (CITYEDGE_REQUIRE_QEMU=1)")
	}
	t.Skip("SKIP: " + msg)
	return ""
}

func crossBuild(t *testing.T, ct crossTarget) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "cityedge-"+ct.name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=crosstest", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+ct.goarch, "GOARM="+ct.goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross build %s: %v\n%s", ct.name, err, b)
	}
	return out
}

// TestCrossStaticBinaries builds the agent for every gateway architecture,
// proves each is a static ELF for its machine, and runs --version under
// qemu-user on the oldest CPU the build promises.
func TestCrossStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("cross builds take a while")
	}
	for _, ct := range crossTargets {
		t.Run(ct.name, func(t *testing.T) {
			var runner []string
			if ct.qemu != nil {
				runner = append([]string{needQemu(t, ct.qemu[0])}, ct.qemu[1:]...)
			}
			bin := crossBuild(t, ct)
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != ct.machine || f.Class != ct.class {
				t.Errorf("ELF is %v %v, want %v %v", f.Machine, f.Class, ct.machine, ct.class)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("not static: has a %v program header", p.Type)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("links shared libraries %v", libs)
			}
			args := append(append(runner, bin), "--version")
			out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			want := "cityedge crosstest ("
			if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), "linux/"+ct.goarch) {
				t.Errorf("--version printed %q", out)
			}
		})
	}
}

// TestARM32Pipeline runs the static linux/arm (GOARM=7) binary under
// qemu-arm-static with simulated sensors against the real test broker: bbolt
// and 64-bit atomics on 32-bit ARM are where bugs hide.
func TestARM32Pipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a cross build and qemu")
	}
	ct := crossTargets[1]
	qemu := needQemu(t, ct.qemu[0])
	b := testbroker.Start(t, testbroker.Options{})
	bin := crossBuild(t, ct)
	s := newSetup(t, b, b.PKI.Client, "")
	col := collect(t, b, "cityedge/test/gw-test")
	p := startAgentCmd(t, exec.Command(qemu, append(ct.qemu[1:], bin, "--config", s.config, "--simulate")...))
	waitFor(t, "readings from the ARM binary", 60*time.Second, func() bool { return len(col.snapshot()) >= 50 })
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
	left := remaining(t, s.stateDir)
	distinct, repeats := checkDelivery(t, col.snapshot(), left)
	t.Logf("armv7 under qemu: %d readings delivered (%d repeats), %d left buffered", distinct, repeats, len(left))
}
