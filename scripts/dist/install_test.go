package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extract unpacks the release tarball with tar, as a technician would, and
// returns the directory holding install.sh.
func extract(t *testing.T, tgz string) string {
	t.Helper()
	tarBin := need(t, "tar", "tar", "TAR")
	dir := t.TempDir()
	runCmd(t, nil, nil, tarBin, "-xzf", tgz, "-C", dir)
	top := filepath.Join(dir, strings.TrimSuffix(filepath.Base(tgz), ".tar.gz"))
	for _, f := range []string{"cityedge", "cityedge.service", "60-cityedge.rules", "cityedge.example.toml", "install.sh", "README.md"} {
		if _, err := os.Stat(filepath.Join(top, f)); err != nil {
			t.Fatalf("tarball lacks %s: %v", f, err)
		}
	}
	return top
}

// TestInstallScript installs from the tarball into a scratch root, twice:
// the second run must change nothing at all, and a dry run neither.
func TestInstallScript(t *testing.T) {
	need(t, "useradd", "passwd", "INSTALL")
	need(t, "sh", "dash", "INSTALL")
	prefix := asRoot(t)
	tg := hostTarget(t)
	dist, tgz, _ := hostPackages(t, tg)
	top := extract(t, filepath.Join(dist, tgz))
	script := filepath.Join(top, "install.sh")
	root := scratchRoot(t)
	host := hostAccounts(t)
	in := func(p string) string { return filepath.Join(root, p) }

	// A dry run on the empty root says what it would do and does none of it.
	before := snapshot(t, root)
	out := runCmd(t, nil, nil, "sh", script, "--root", root, "--dry-run")
	for _, want := range []string{"creating system user cityedge", "installing /usr/local/bin/cityedge", "installing /etc/cityedge/cityedge.toml", "dry run: nothing was changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if snapshot(t, root) != before {
		t.Fatalf("--dry-run changed the root")
	}

	runCmd(t, prefix, nil, "sh", script, "--root", root)
	if e := accountEntry(t, root, "passwd", "cityedge"); !strings.HasSuffix(e, ":/var/lib/cityedge:/usr/sbin/nologin") {
		t.Errorf("passwd entry %q", e)
	}
	for _, g := range []string{"i2c", "gpio"} {
		if e := accountEntry(t, root, "group", g); !strings.HasSuffix(e, ":cityedge") {
			t.Errorf("group %s = %q, want cityedge as member", g, e)
		}
	}
	for p, mode := range map[string]os.FileMode{
		"usr/local/bin/cityedge":                             0o755,
		"etc/systemd/system/cityedge.service":                0o644,
		"etc/udev/rules.d/60-cityedge.rules":                 0o644,
		"etc/cityedge/cityedge.toml":                         0o644,
		"usr/local/share/doc/cityedge/README.md":             0o644,
		"var/lib/cityedge":                                   os.ModeDir | 0o700,
		"usr/local/share/doc/cityedge/cityedge.example.toml": 0o644,
	} {
		if _, _, m := owner(t, in(p)); m != mode {
			t.Errorf("%s: mode %v, want %v", p, m, mode)
		}
	}
	unit, err := os.ReadFile(in("etc/systemd/system/cityedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// The installed unit is the shipped one with the binary and docs under
	// the prefix.
	want := strings.NewReplacer("ExecStart=/usr/bin/cityedge ", "ExecStart=/usr/local/bin/cityedge ",
		"ExecStopPost=-/usr/bin/cityedge ", "ExecStopPost=-/usr/local/bin/cityedge ",
		"file:///usr/share/doc/cityedge/", "file:///usr/local/share/doc/cityedge/").Replace(string(shipped))
	if string(unit) != want {
		t.Errorf("installed unit differs from the shipped one beyond the prefix:\n%s", unit)
	}
	if target, err := os.Readlink(in("etc/systemd/system/multi-user.target.wants/cityedge.service")); err != nil || target != "/etc/systemd/system/cityedge.service" {
		t.Errorf("unit not enabled: %q, %v", target, err)
	}
	if v := runCmd(t, nil, nil, in("usr/local/bin/cityedge"), "--version"); !strings.Contains(v, testVersion) {
		t.Errorf("installed binary says %q", v)
	}

	// Site state: an edited configuration and a buffer. A second run (and a
	// dry run after it) must leave every byte, mode, owner and time alone.
	if err := os.WriteFile(in("etc/cityedge/cityedge.toml"), []byte("# edited on site\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in("var/lib/cityedge/buffer.db"), []byte("unsent readings"), 0o600); err != nil {
		t.Fatal(err)
	}
	installed := snapshot(t, root)
	out = runCmd(t, prefix, nil, "sh", script, "--root", root)
	if snapshot(t, root) != installed {
		t.Errorf("a second run changed the installation; its output:\n%s", out)
	}
	for _, verb := range []string{"creating", "installing", "updating", "fixing", "enabling"} {
		if strings.Contains(out, verb) {
			t.Errorf("a second run reports %q:\n%s", verb, out)
		}
	}
	out = runCmd(t, nil, nil, "sh", script, "--root", root, "--dry-run")
	if strings.Contains(out, "would") {
		t.Errorf("a dry run over a complete installation would still change things:\n%s", out)
	}

	// An upgrade with a new binary replaces exactly that file.
	newBin := filepath.Join(top, "cityedge")
	if err := os.WriteFile(newBin, append(mustRead(t, agent(t)), "\x00upgrade"...), 0o755); err != nil {
		t.Fatal(err)
	}
	out = runCmd(t, prefix, nil, "sh", script, "--root", root)
	if !strings.Contains(out, "updating /usr/local/bin/cityedge") || strings.Count(out, "updating") != 1 {
		t.Errorf("upgrade output:\n%s", out)
	}
	if b := mustRead(t, in("var/lib/cityedge/buffer.db")); string(b) != "unsent readings" {
		t.Errorf("upgrade touched the buffer")
	}
	if b := mustRead(t, in("etc/cityedge/cityedge.toml")); string(b) != "# edited on site\n" {
		t.Errorf("upgrade replaced the configuration")
	}
	if hostAccounts(t) != host {
		t.Fatalf("install.sh --root changed this machine's accounts")
	}
}

// TestInstallScriptRefusesPackagedSystem: with the .deb installed, the
// script would leave two agents; it refuses instead.
func TestInstallScriptRefusesPackagedSystem(t *testing.T) {
	tg := hostTarget(t)
	dist, tgz, _ := hostPackages(t, tg)
	top := extract(t, filepath.Join(dist, tgz))
	root := scratchRoot(t)
	list := filepath.Join(root, "var/lib/dpkg/info/cityedge.list")
	if err := os.MkdirAll(filepath.Dir(list), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, []byte("/usr/bin/cityedge\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := tryCmd(nil, nil, "sh", filepath.Join(top, "install.sh"), "--root", root, "--dry-run")
	if err == nil || !strings.Contains(out, "Debian package") {
		t.Errorf("install.sh over a packaged cityedge: err %v, output:\n%s", err, out)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstallScriptEmptyRoot: --root on an empty directory says what it
// needs (the image's account files) instead of a raw groupadd error, and
// changes nothing.
func TestInstallScriptEmptyRoot(t *testing.T) {
	tg := hostTarget(t)
	dist, tgz, _ := hostPackages(t, tg)
	top := extract(t, filepath.Join(dist, tgz))
	root := t.TempDir()
	out, err := tryCmd(nil, nil, "sh", filepath.Join(top, "install.sh"), "--root", root)
	if err == nil || !strings.Contains(out, "has no etc/passwd") || strings.Contains(out, "groupadd:") {
		t.Errorf("install.sh --root on an empty directory: err %v, output:\n%s", err, out)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("install.sh changed the empty root: %v", entries)
	}
}
