package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFromCheckout builds the agent with plain `go build` in a fresh
// git clone of this repository: --version names the clone's commit, with
// no -ldflags. With -buildvcs=false (as in `make cross`, which passes
// -ldflags instead) nothing is known. The toolchain stamps only a .git
// directory: a linked worktree (whose .git is a file, golang/go#58218) or
// GOFLAGS=-buildvcs=false in `go env` gives "commit unknown", which is why
// the test clones and sets GOFLAGS itself.
func TestVersionFromCheckout(t *testing.T) {
	git := func(dir string, args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	top := git(".", "rev-parse", "--show-toplevel")
	clone := filepath.Join(t.TempDir(), "src")
	git(".", "clone", "-q", "--no-hardlinks", top, clone)
	head := git(clone, "rev-parse", "HEAD")
	bin := t.TempDir()
	for _, c := range []struct {
		name, flag, want string
	}{
		{"vcs", "-buildvcs=true", "(commit " + head + ", built 20"},
		{"no vcs", "-buildvcs=false", "(commit unknown, built unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(bin, strings.ReplaceAll(c.name, " ", "-"))
			build := exec.Command("go", "build", "-o", out, "./cmd/cityedge")
			build.Dir = clone
			build.Env = append(os.Environ(), "GOFLAGS="+c.flag, "CGO_ENABLED=0")
			if b, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, b)
			}
			v, err := exec.Command(out, "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("--version: %v\n%s", err, v)
			}
			if !strings.Contains(string(v), c.want) {
				t.Errorf("--version = %q, want it to contain %q", v, c.want)
			}
		})
	}
}
