package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testVersion is stamped into the agent the tests build and package.
const testVersion = "v0.9.1-7-g1a2b3c4"

// testEpoch is the SOURCE_DATE_EPOCH of the test packages.
const testEpoch = "1700000000"

// repoRoot is the module root, two levels up from scripts/dist.
var repoRoot = func() string {
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return abs
}()

// agentDir holds the agent built for this machine (once, on first use), so
// that a packaged binary can be run after installing it.
var (
	agentDir  string
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cityedge-dist-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent returns the path of the agent built for this machine.
func agent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() { agentPath, agentErr = buildAgent(agentDir) })
	if agentErr != nil {
		t.Fatalf("build the agent to package: %v", agentErr)
	}
	return agentPath
}

// buildAgent builds cmd/cityedge the way `make cross` does, for this machine.
func buildAgent(dir string) (string, error) {
	return buildAgentFrom(repoRoot, dir, nil)
}

// buildAgentFrom builds cmd/cityedge of the module at src into dir, with
// extra environment (e.g. a fresh GOCACHE for a clean build).
func buildAgentFrom(src, dir string, env []string) (string, error) {
	out := filepath.Join(dir, "cityedge")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version="+testVersion+" -X main.commit=1a2b3c4 -X main.buildDate=2023-11-14T22:13:20Z",
		"-o", out, "./cmd/cityedge")
	cmd.Dir = src
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, b)
	}
	return out, nil
}

// hostTarget is the packaging target this machine can run.
func hostTarget(t *testing.T) target {
	t.Helper()
	name := map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armv7"}[runtime.GOARCH]
	tg, ok := targetByName(name)
	if !ok || runtime.GOOS != "linux" {
		t.Skipf("SKIP: packages are built for linux/{amd64,arm64,arm}; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if runtime.GOARCH == "arm" {
		tg.goarm = "" // whatever GOARM this machine's Go defaults to
	}
	return tg
}

// need skips the test when tool is missing, naming the package to install,
// or fails it when CITYEDGE_REQUIRE_<env>=1 says it must run.
func need(t *testing.T, tool, pkg, env string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if os.Getenv("CITYEDGE_REQUIRE_"+env) == "1" {
		t.Fatalf("%s not found and CITYEDGE_REQUIRE_%s=1: apt-get install %s", tool, env, pkg)
	}
	t.Skipf("SKIP: %s not found: apt-get install %s", tool, pkg)
	return ""
}

// asRoot returns the command prefix that runs tools needing root (dpkg,
// useradd): nothing when the test runs as root, else fakeroot with a state
// file kept for the whole test, so that owners set by one run are seen by
// the next. It skips the test when neither is possible. Under fakeroot the
// files really belong to the test's user: owner checks need root.
func asRoot(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() == 0 {
		return nil
	}
	p, err := exec.LookPath("fakeroot")
	if err != nil {
		t.Skip("SKIP: needs root or fakeroot: apt-get install fakeroot")
	}
	state := filepath.Join(t.TempDir(), "fakeroot.state")
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{p, "-i", state, "-s", state}
}

// runCmd runs name args... with env added, failing the test on error, and
// returns the combined output.
func runCmd(t *testing.T, prefix []string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := tryCmd(prefix, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func tryCmd(prefix []string, env []string, name string, args ...string) (string, error) {
	argv := append(append(append([]string(nil), prefix...), name), args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

var (
	hostPkgOnce                   sync.Once
	hostPkgDist, hostTgz, hostDeb string
	hostPkgErr                    error
)

// hostPackages builds the tarball and .deb of this machine's target once
// for the tests that only read or install them.
func hostPackages(t *testing.T, tg target) (dist, tgz, debFile string) {
	t.Helper()
	bin := agent(t)
	hostPkgOnce.Do(func() {
		hostPkgDist = filepath.Join(agentDir, "dist")
		hostPkgErr = makePackages(hostPkgDist, tg, bin)
		debVer, _ := debVersion(testVersion)
		hostTgz, hostDeb = artifactNames(tg, testVersion, debVer)
	})
	if hostPkgErr != nil {
		t.Fatal(hostPkgErr)
	}
	return hostPkgDist, hostTgz, hostDeb
}

// makePackages runs the dist command for tg on a copy of bin in dist.
func makePackages(dist string, tg target, bin string) error {
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dist, "cityedge-linux-"+tg.name), b, 0o755); err != nil {
		return err
	}
	args := []string{"-version", testVersion, "-repo", repoRoot, "-dist", dist, "-targets", tg.name}
	var out, errb bytes.Buffer
	if err := run(args, testEpoch, &out, &errb); err != nil {
		return fmt.Errorf("dist %v: %v\n%s", args, err, errb.String())
	}
	return nil
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}

// scratchRoot makes a directory with the account files of a minimal system
// (root only), for installs that must not touch this machine.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":   "root:x:0:\n",
		"etc/shadow":  "root:*:19000:0:99999:7:::\n",
		"etc/gshadow": "root:*::\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// accountEntry returns the line for name in root's etc/<db>, or "".
func accountEntry(t *testing.T, root, db, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc", db))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+":") {
			return l
		}
	}
	return ""
}

// snapshot describes every file under root: type, mode, owner, size, mtime,
// content hash, link target. Two equal snapshots mean nothing was touched.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v %d:%d %d %d", rel, fi.Mode(), st.Uid, st.Gid, fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// hostAccounts is this machine's passwd and group, to prove an install into
// a scratch root left them alone.
func hostAccounts(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		data, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}
