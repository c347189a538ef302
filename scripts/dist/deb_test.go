package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// arMembers splits a .deb by the ar layout of deb(5), checking each header.
func arMembers(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("!<arch>\n")) {
		t.Fatalf("no ar magic")
	}
	out := map[string][]byte{}
	var order []string
	rest := data[8:]
	for len(rest) > 0 {
		if len(rest) < 60 || string(rest[58:60]) != "`\n" {
			t.Fatalf("bad ar header at member %d", len(order))
		}
		h := string(rest[:60])
		name := strings.TrimSpace(h[:16])
		var mtime, uid, gid, size int64
		var mode string
		if _, err := fmt.Sscan(h[16:58], &mtime, &uid, &gid, &mode, &size); err != nil {
			t.Fatalf("ar header %q: %v", h, err)
		}
		if mtime != 1700000000 || uid != 0 || gid != 0 || mode != "100644" {
			t.Errorf("ar member %s: mtime %d uid %d gid %d mode %s, want %s 0 0 100644", name, mtime, uid, gid, mode, testEpoch)
		}
		rest = rest[60:]
		out[name] = rest[:size]
		order = append(order, name)
		rest = rest[size+size%2:]
	}
	if got := strings.Join(order, " "); got != "debian-binary control.tar.gz data.tar.gz" {
		t.Fatalf("ar members %q, want debian-binary control.tar.gz data.tar.gz in that order", got)
	}
	return out
}

type tarItem struct {
	name string
	mode int64
	typ  byte
	body string
}

// untar reads a gzip-compressed tar, checking that every member is owned by
// root and carries the epoch as its time.
func untar(t *testing.T, data []byte) []tarItem {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries time %v / name %q; want neither (gzip -n)", zr.ModTime, zr.Name)
	}
	tr := tar.NewReader(zr)
	var items []tarItem
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s: owner %d:%d (%s:%s), want root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH %s", h.Name, h.ModTime, testEpoch)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, tarItem{h.Name, h.Mode, h.Typeflag, string(b)})
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.name
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("members are not sorted: %q", names)
	}
	return items
}

// TestDebLayout reads the package with Go alone, so it runs everywhere.
func TestDebLayout(t *testing.T) {
	tg := hostTarget(t)
	dist, _, debFile := hostPackages(t, tg)
	data, err := os.ReadFile(filepath.Join(dist, debFile))
	if err != nil {
		t.Fatal(err)
	}
	m := arMembers(t, data)
	if string(m["debian-binary"]) != "2.0\n" {
		t.Errorf("debian-binary %q", m["debian-binary"])
	}
	ctl := map[string]tarItem{}
	for _, it := range untar(t, m["control.tar.gz"]) {
		ctl[it.name] = it
	}
	for name, mode := range map[string]int64{"./control": 0o644, "./conffiles": 0o644, "./md5sums": 0o644, "./postinst": 0o755, "./prerm": 0o755, "./postrm": 0o755} {
		if it, ok := ctl[name]; !ok || it.mode != mode {
			t.Errorf("control member %s: mode %o present %v, want %o", name, it.mode, ok, mode)
		}
	}
	want := map[string]int64{
		"./usr/bin/cityedge":                             0o755,
		"./lib/systemd/system/cityedge.service":          0o644,
		"./lib/udev/rules.d/60-cityedge.rules":           0o644,
		"./etc/cityedge/cityedge.toml":                   0o644,
		"./usr/share/doc/cityedge/README.md":             0o644,
		"./usr/share/doc/cityedge/copyright":             0o644,
		"./usr/share/doc/cityedge/cityedge.example.toml": 0o644,
		"./usr/share/doc/cityedge/changelog.Debian.gz":   0o644,
		"./usr/share/man/man1/cityedge.1.gz":             0o644,
	}
	// The documents README links to, at the same relative paths.
	for _, g := range docGlobs {
		matches, _ := filepath.Glob(filepath.Join(repoRoot, g))
		if len(matches) == 0 {
			t.Errorf("no document matches %s", g)
		}
		for _, m := range matches {
			rel, _ := filepath.Rel(repoRoot, m)
			want["./usr/share/doc/cityedge/"+filepath.ToSlash(rel)] = 0o644
		}
	}
	files := map[string]tarItem{}
	for _, it := range untar(t, m["data.tar.gz"]) {
		if it.typ == tar.TypeDir {
			if it.mode != 0o755 || !strings.HasSuffix(it.name, "/") {
				t.Errorf("directory %s mode %o", it.name, it.mode)
			}
			continue
		}
		files[it.name] = it
		if _, ok := want[it.name]; !ok {
			t.Errorf("unexpected file %s in the package", it.name)
		}
	}
	for name, mode := range want {
		if it, ok := files[name]; !ok || it.mode != mode {
			t.Errorf("%s: present %v mode %o, want mode %o", name, ok, it.mode, mode)
		}
	}
	if b, _ := os.ReadFile(agent(t)); files["./usr/bin/cityedge"].body != string(b) {
		t.Errorf("the packaged binary is not the one built")
	}
	// md5sums covers every file but the conffile, with the right sums.
	sums := strings.Split(strings.TrimSpace(ctl["./md5sums"].body), "\n")
	if len(sums) != len(want)-1 {
		t.Errorf("md5sums has %d lines, want %d:\n%s", len(sums), len(want)-1, ctl["./md5sums"].body)
	}
	if strings.Contains(ctl["./md5sums"].body, "etc/cityedge") {
		t.Errorf("md5sums lists the conffile")
	}
	if got := ctl["./conffiles"].body; got != "/etc/cityedge/cityedge.toml\n" {
		t.Errorf("conffiles %q", got)
	}
}

// TestDebWithDpkg asks dpkg-deb what it makes of the package.
func TestDebWithDpkg(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb", "dpkg", "DPKG")
	tg := hostTarget(t)
	dist, _, debFile := hostPackages(t, tg)
	deb := filepath.Join(dist, debFile)

	info := runCmd(t, nil, nil, dpkgDeb, "--info", deb)
	debVer, _ := debVersion(testVersion)
	for _, want := range []string{
		"Package: cityedge", "Version: " + debVer, "Architecture: " + tg.debArch,
		"Depends: passwd, init-system-helpers", "Installed-Size: ",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	if conf := runCmd(t, nil, nil, dpkgDeb, "--ctrl-tarfile", deb); !strings.Contains(conf, "conffiles") {
		t.Errorf("control archive has no conffiles")
	}
	contents := runCmd(t, nil, nil, dpkgDeb, "--contents", deb)
	lineRE := regexp.MustCompile(`(?m)^(\S+) (\S+)\s+\d+ \S+ \S+ (\./\S*)$`)
	got := map[string]string{}
	for _, m := range lineRE.FindAllStringSubmatch(contents, -1) {
		if m[2] != "root/root" {
			t.Errorf("%s owned by %s", m[3], m[2])
		}
		got[m[3]] = m[1]
	}
	for name, perm := range map[string]string{
		"./usr/bin/cityedge":                    "-rwxr-xr-x",
		"./lib/systemd/system/cityedge.service": "-rw-r--r--",
		"./etc/cityedge/cityedge.toml":          "-rw-r--r--",
		"./lib/udev/rules.d/60-cityedge.rules":  "-rw-r--r--",
		"./usr/share/doc/cityedge/copyright":    "-rw-r--r--",
	} {
		if got[name] != perm {
			t.Errorf("dpkg-deb --contents: %s is %q, want %s\n%s", name, got[name], perm, contents)
		}
	}
	// The file name is the one Debian tools would give it, plus the armv6
	// marker where there is one.
	wantName := fmt.Sprintf("cityedge_%s_%s%s.deb", debVer, tg.debArch, tg.debSuffix)
	if debFile != wantName {
		t.Errorf("package file %s, want %s", debFile, wantName)
	}
}
