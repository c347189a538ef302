package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dpkgRoot prepares root as a dpkg installation that already has the
// package's dependencies (as the base system of any Debian gateway does).
func dpkgRoot(t *testing.T) string {
	t.Helper()
	root := scratchRoot(t)
	admin := filepath.Join(root, "var", "lib", "dpkg")
	for _, d := range []string{"info", "updates"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var status strings.Builder
	for _, p := range []struct{ name, version string }{{"passwd", "1:4.13+dfsg1-1"}, {"init-system-helpers", "1.65.2"}} {
		status.WriteString("Package: " + p.name + "\nStatus: install ok installed\nPriority: required\nSection: admin\n" +
			"Maintainer: test\nArchitecture: all\nVersion: " + p.version + "\nDescription: stand-in for the base system\n\n")
		if err := os.WriteFile(filepath.Join(admin, "info", p.name+".list"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"status": status.String(), "available": ""} {
		if err := os.WriteFile(filepath.Join(admin, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// dpkg runs dpkg on root with maintainer scripts outside a chroot (they
// honour DPKG_ROOT), as root or under fakeroot.
func dpkg(t *testing.T, prefix []string, root string, args ...string) string {
	t.Helper()
	bin := need(t, "dpkg", "dpkg", "DPKG")
	return runCmd(t, prefix, nil, bin, append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
}

func owner(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestDebInstallUpgradeRemovePurge takes the package through its life in a
// scratch root with the real dpkg and maintainer scripts: install, upgrade
// over an edited configuration and a full buffer, remove, purge.
func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	need(t, "dpkg", "dpkg", "DPKG")
	need(t, "useradd", "passwd", "DPKG")
	sudo := asRoot(t)
	isRoot := os.Geteuid() == 0
	tg := hostTarget(t)
	dist, _, debFile := hostPackages(t, tg)
	root := dpkgRoot(t)
	host := hostAccounts(t)
	in := func(p string) string { return filepath.Join(root, p) }
	// gpio is there before the package, with a user in it (as on the
	// Raspberry Pi OS); i2c is not: the package creates it.
	for db, line := range map[string]string{"group": "gpio:x:997:pi\n", "gshadow": "gpio:!::pi\n"} {
		f, err := os.OpenFile(in("etc/"+db), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(line)
		f.Close()
	}

	// Install.
	out := dpkg(t, sudo, root, "--install", filepath.Join(dist, debFile))
	if !strings.Contains(out, "systemctl start cityedge") {
		t.Errorf("a fresh install does not tell what to do next:\n%s", out)
	}
	pw := accountEntry(t, root, "passwd", "cityedge")
	f := strings.Split(pw, ":")
	if len(f) != 7 || f[5] != "/var/lib/cityedge" || f[6] != "/usr/sbin/nologin" {
		t.Fatalf("passwd entry %q: want home /var/lib/cityedge, shell /usr/sbin/nologin", pw)
	}
	uid, _ := strconv.Atoi(f[2])
	gid, _ := strconv.Atoi(f[3])
	if uid == 0 || uid >= 1000 {
		t.Errorf("cityedge has uid %d, want a system uid (1..999)", uid)
	}
	for _, g := range []string{"i2c", "gpio"} {
		e := accountEntry(t, root, "group", g)
		if !strings.HasSuffix(e, ":cityedge") && !strings.HasSuffix(e, ",cityedge") {
			t.Errorf("group %s = %q, want cityedge as member", g, e)
		}
	}
	if e := accountEntry(t, root, "group", "cityedge"); !strings.HasPrefix(e, "cityedge:x:"+f[3]+":") {
		t.Errorf("group cityedge = %q, want gid %s", e, f[3])
	}
	su, sg, sm := owner(t, in("var/lib/cityedge"))
	if !sm.IsDir() || sm.Perm() != 0o700 || isRoot && (int(su) != uid || int(sg) != gid) {
		t.Errorf("/var/lib/cityedge: %d:%d %v, want %d:%d drwx------", su, sg, sm, uid, gid)
	}
	if target, err := os.Readlink(in("etc/systemd/system/multi-user.target.wants/cityedge.service")); err != nil || target != "/lib/systemd/system/cityedge.service" {
		t.Errorf("unit not enabled: link %q, %v", target, err)
	}
	if v := runCmd(t, nil, nil, in("usr/bin/cityedge"), "--version"); !strings.Contains(v, testVersion) {
		t.Errorf("installed binary says %q, want version %s", v, testVersion)
	}
	if got := hostAccounts(t); got != host {
		t.Fatalf("installing into %s changed this machine's /etc/passwd or /etc/group", root)
	}

	// Upgrade to a newer package whose example configuration changed, over
	// an edited configuration and a buffer with readings in it.
	edited := "# edited on site\n"
	if err := os.WriteFile(in("etc/cityedge/cityedge.toml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	buffer := []byte("unsent readings")
	if err := os.WriteFile(in("var/lib/cityedge/buffer.db"), buffer, 0o600); err != nil {
		t.Fatal(err)
	}
	// An admin-placed private key, owned by the service user.
	if err := os.WriteFile(in("etc/cityedge/client.key"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if isRoot {
		if err := os.Lchown(in("etc/cityedge/client.key"), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	src, err := readSources(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	src.example = append(src.example, "# a new release\n"...)
	bin, err := os.ReadFile(agent(t))
	if err != nil {
		t.Fatal(err)
	}
	debVer, _ := debVersion(testVersion)
	newer, err := deb(bin, src, debMeta{version: debVer + "+1", arch: tg.debArch, maintainer: "test <test@example.org>", hint: "test"}, mustEpoch(t))
	if err != nil {
		t.Fatal(err)
	}
	newerFile := filepath.Join(t.TempDir(), "newer.deb")
	if err := os.WriteFile(newerFile, newer, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg(t, sudo, root, "--force-confold", "--install", newerFile)
	if b, _ := os.ReadFile(in("etc/cityedge/cityedge.toml")); string(b) != edited {
		t.Errorf("upgrade replaced the edited configuration: %q", b)
	}
	if b, _ := os.ReadFile(in("etc/cityedge/cityedge.toml.dpkg-dist")); !strings.HasSuffix(string(b), "# a new release\n") {
		t.Errorf("the new example configuration is not beside it as .dpkg-dist")
	}
	if b, _ := os.ReadFile(in("var/lib/cityedge/buffer.db")); string(b) != string(buffer) {
		t.Errorf("upgrade changed the buffer: %q", b)
	}
	if e := accountEntry(t, root, "passwd", "cityedge"); e != pw {
		t.Errorf("upgrade changed the account: %q, was %q", e, pw)
	}

	// Remove: the program goes, configuration, account and buffer stay.
	dpkg(t, sudo, root, "--remove", "cityedge")
	for _, p := range []string{"usr/bin/cityedge", "lib/systemd/system/cityedge.service"} {
		if exists(in(p)) {
			t.Errorf("remove left %s", p)
		}
	}
	if b, _ := os.ReadFile(in("var/lib/cityedge/buffer.db")); string(b) != string(buffer) {
		t.Errorf("remove touched the buffer: %q", b)
	}
	if !exists(in("etc/cityedge/cityedge.toml")) || accountEntry(t, root, "passwd", "cityedge") == "" {
		t.Errorf("remove deleted the configuration or the account")
	}

	// Purge: state, account and the package's configuration go; the admin's
	// key stays, handed to root; i2c and gpio stay (other software uses them).
	dpkg(t, sudo, root, "--purge", "cityedge")
	if exists(in("var/lib/cityedge")) {
		t.Errorf("purge left /var/lib/cityedge")
	}
	if exists(in("etc/cityedge/cityedge.toml")) {
		t.Errorf("purge left the conffile")
	}
	if accountEntry(t, root, "passwd", "cityedge") != "" || accountEntry(t, root, "group", "cityedge") != "" {
		t.Errorf("purge left the cityedge account or group")
	}
	if e := accountEntry(t, root, "group", "gpio"); e != "gpio:x:997:pi" {
		t.Errorf("purge changed the gpio group that was there before: %q", e)
	}
	if e := accountEntry(t, root, "group", "i2c"); e != "" {
		t.Errorf("purge left the i2c group the package created and nobody else uses: %q", e)
	}
	if ku, _, km := owner(t, in("etc/cityedge/client.key")); isRoot && (ku != 0 || km.Perm() != 0o600) {
		t.Errorf("the admin's key after purge: uid %d mode %v, want root 0600", ku, km)
	}
	if exists(in("etc/systemd/system/multi-user.target.wants/cityedge.service")) {
		t.Errorf("purge left the unit enabled")
	}
	if status, _ := os.ReadFile(in("var/lib/dpkg/status")); strings.Contains(string(status), "Package: cityedge\n") {
		t.Errorf("dpkg still knows the package after purge")
	}
	if got := hostAccounts(t); got != host {
		t.Fatalf("the scratch-root install changed this machine's accounts")
	}
}

func mustEpoch(t *testing.T) time.Time {
	t.Helper()
	e, err := sourceDateEpoch(testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
