package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDebDocs: the package ships the man page (the generated
// docs/cityedge.1, gzipped), a Debian changelog whose newest entry is the
// package's version, and every document README links to.
func TestDebDocs(t *testing.T) {
	tg := hostTarget(t)
	dist, _, debFile := hostPackages(t, tg)
	data, err := os.ReadFile(filepath.Join(dist, debFile))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, it := range untar(t, arMembers(t, data)["data.tar.gz"]) {
		files[it.name] = it.body
	}
	gunzip := func(name string) string {
		t.Helper()
		zr, err := gzip.NewReader(strings.NewReader(files[name]))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !zr.ModTime.IsZero() || zr.Name != "" {
			t.Errorf("%s: gzip header carries a name or time (not reproducible)", name)
		}
		b, _ := io.ReadAll(zr)
		return string(b)
	}
	if man := gunzip("./usr/share/man/man1/cityedge.1.gz"); man != string(mustRead(t, filepath.Join(repoRoot, "docs/cityedge.1"))) || !strings.Contains(man, ".TH CITYEDGE 1") {
		t.Errorf("the packaged man page is not docs/cityedge.1")
	}
	debVer, _ := debVersion(testVersion)
	cl := gunzip("./usr/share/doc/cityedge/changelog.Debian.gz")
	if first := strings.SplitN(cl, "\n", 2)[0]; first != "cityedge ("+debVer+") unstable; urgency=medium" {
		t.Errorf("changelog's newest entry %q is not for %s", first, debVer)
	}
	checkChangelog(t, cl)
	for _, rel := range []string{"docs/REMOTE.md", "drivers/bme280/README.md"} {
		if files["./usr/share/doc/cityedge/"+rel] != string(mustRead(t, filepath.Join(repoRoot, rel))) {
			t.Errorf("the package lacks %s (README links to it)", rel)
		}
	}
}

// checkChangelog holds a changelog to Debian's format (deb-changelog(5)):
// a header, change lines, a trailer with maintainer and RFC 5322 date.
func checkChangelog(t *testing.T, cl string) {
	t.Helper()
	header := regexp.MustCompile(`^cityedge \([0-9][A-Za-z0-9.+~-]*\) unstable; urgency=medium$`)
	trailer := regexp.MustCompile(`^ -- .+ <.+>  (\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4})$`)
	entries, inEntry := 0, false
	for i, l := range strings.Split(strings.TrimRight(cl, "\n"), "\n") {
		switch {
		case header.MatchString(l):
			if inEntry {
				t.Errorf("line %d: header before the previous entry's trailer", i+1)
			}
			entries++
			inEntry = true
		case trailer.MatchString(l):
			m := trailer.FindStringSubmatch(l)
			if _, err := time.Parse("Mon, 02 Jan 2006 15:04:05 -0700", m[1]); err != nil {
				t.Errorf("line %d: date %q: %v", i+1, m[1], err)
			}
			inEntry = false
		case l == "" || strings.HasPrefix(l, "  "):
		default:
			t.Errorf("line %d is not Debian changelog format: %q", i+1, l)
		}
	}
	if entries == 0 || inEntry {
		t.Errorf("changelog has %d entries, last one unfinished: %v", entries, inEntry)
	}
}

func TestDebChangelogReproducible(t *testing.T) {
	base := mustRead(t, filepath.Join(repoRoot, "scripts/dist/debian/changelog"))
	checkChangelog(t, string(base))
	at := time.Unix(1764064800, 0)
	a, b := debChangelog(base, "1.2.3", "m <m@x>", at), debChangelog(base, "1.2.3", "m <m@x>", at)
	if !bytes.Equal(a, b) || !bytes.Equal(gz(a), gz(b)) {
		t.Error("two builds made different changelogs")
	}
	checkChangelog(t, string(a))
}
