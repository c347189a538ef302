package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestReproducible builds the agent twice from source — two clean builds:
// the second from a copy of the sources at another path with an empty build
// cache — and packages each, from inputs that differ in everything but
// content (file times, permissions, checkout path), once in process and once
// through scripts/dist.sh as `make dist` runs it. The binaries, tarballs,
// .debs and SHA256SUMS must be the same bytes.
func TestReproducible(t *testing.T) {
	need(t, "go", "golang", "GO")
	tg := hostTarget(t)
	bin := agent(t)
	binB := cleanBuild(t)
	if !bytes.Equal(mustRead(t, bin), mustRead(t, binB)) {
		t.Fatalf("two clean builds of the same sources made different binaries: %s and %s", bin, binB)
	}

	// Build A: a copy of the sources with odd times and modes.
	repoA := t.TempDir()
	distA := t.TempDir()
	odd := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	srcs := []string{"scripts/systemd/cityedge.service", "scripts/systemd/60-cityedge.rules",
		"scripts/cityedge.example.toml", "scripts/install.sh", "README.md", "LICENSE",
		"docs/cityedge.1", "scripts/dist/debian/changelog"}
	for _, g := range docGlobs {
		matches, _ := filepath.Glob(filepath.Join(repoRoot, g))
		for _, m := range matches {
			rel, _ := filepath.Rel(repoRoot, m)
			srcs = append(srcs, rel)
		}
	}
	for _, p := range srcs {
		src := filepath.Join(repoRoot, p)
		if _, err := os.Stat(src); os.IsNotExist(err) && p == "LICENSE" {
			continue
		}
		dst := filepath.Join(repoA, p)
		copyFile(t, src, dst, 0o600)
		if err := os.Chtimes(dst, odd, odd); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bin, filepath.Join(distA, "cityedge-linux-"+tg.name), 0o700)
	if err := os.Chtimes(filepath.Join(distA, "cityedge-linux-"+tg.name), odd, odd); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	if err := run([]string{"-version", testVersion, "-repo", repoA, "-dist", distA, "-targets", tg.name}, testEpoch, io.Discard, &errb); err != nil {
		t.Fatalf("build A: %v\n%s", err, errb.String())
	}

	// Build B: the repository itself, through dist.sh.
	distB := t.TempDir()
	copyFile(t, binB, filepath.Join(distB, "cityedge-linux-"+tg.name), 0o755)
	runCmd(t, nil, []string{"VERSION=" + testVersion, "SOURCE_DATE_EPOCH=" + testEpoch, "DIST=" + distB, "TARGETS=" + tg.name},
		filepath.Join(repoRoot, "scripts", "dist.sh"))

	a, b := outputs(t, distA), outputs(t, distB)
	if len(a) != 3 {
		t.Fatalf("build A made %d files, want a tarball, a .deb and SHA256SUMS: %v", len(a), keys(a))
	}
	if strings.Join(keys(a), " ") != strings.Join(keys(b), " ") {
		t.Fatalf("the builds made different files: %v and %v", keys(a), keys(b))
	}
	for name, da := range a {
		if !bytes.Equal(da, b[name]) {
			t.Errorf("%s differs between two builds of the same inputs", name)
		}
	}
	sums := string(a["SHA256SUMS"])
	for name := range a {
		if name != "SHA256SUMS" && !strings.Contains(sums, "  "+name+"\n") {
			t.Errorf("SHA256SUMS does not list %s:\n%s", name, sums)
		}
	}
	sha := need(t, "sha256sum", "coreutils", "GO")
	check := exec.Command(sha, "-c", "--strict", "SHA256SUMS")
	check.Dir = distB
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
}

// cleanBuild copies the module's files (tracked and untracked, not ignored)
// to a new directory and builds the agent there with an empty build cache,
// so nothing of the first build is reused.
func cleanBuild(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "elsewhere", "cityedge")
	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = repoRoot
	list, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, p := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join(repoRoot, p))
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a link
		}
		copyFile(t, filepath.Join(repoRoot, p), filepath.Join(src, p), fi.Mode().Perm())
	}
	bin, err := buildAgentFrom(src, t.TempDir(), []string{"GOCACHE=" + t.TempDir()})
	if err != nil {
		t.Fatalf("clean build: %v", err)
	}
	return bin
}

// outputs reads the packaging outputs of a dist directory (not the input
// binaries).
func outputs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cityedge-linux-") {
			continue
		}
		out[e.Name()] = mustRead(t, filepath.Join(dir, e.Name()))
	}
	return out
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
