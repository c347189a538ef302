package main

import (
	"bytes"
	"crypto/md5"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Where the package puts things. The unit file names the same paths; a test
// holds the two together.
const (
	binPath     = "usr/bin/cityedge"
	unitPath    = "lib/systemd/system/cityedge.service"
	udevPath    = "lib/udev/rules.d/60-cityedge.rules"
	configPath  = "etc/cityedge/cityedge.toml"
	docDir      = "usr/share/doc/cityedge"
	packageName = "cityedge"
)

//go:embed debian/postinst debian/prerm debian/postrm
var maintainerScripts embed.FS

// sources are the files every package carries besides the binary, read from
// the repository.
type sources struct {
	unit, udev, example, install, readme []byte
	license                              []byte // nil when the tree has no LICENSE
}

func readSources(repo string) (sources, error) {
	var s sources
	for _, f := range []struct {
		dst  *[]byte
		path string
	}{
		{&s.unit, "scripts/systemd/cityedge.service"},
		{&s.udev, "scripts/systemd/60-cityedge.rules"},
		{&s.example, "scripts/cityedge.example.toml"},
		{&s.install, "scripts/install.sh"},
		{&s.readme, "README.md"},
	} {
		b, err := os.ReadFile(filepath.Join(repo, f.path))
		if err != nil {
			return s, fmt.Errorf("package source: %w", err)
		}
		*f.dst = b
	}
	b, err := os.ReadFile(filepath.Join(repo, "LICENSE"))
	switch {
	case err == nil:
		s.license = b
	case !os.IsNotExist(err):
		return s, fmt.Errorf("package source: %w", err)
	}
	return s, nil
}

// tarball is the release tarball: everything install.sh needs, under one
// top directory named like the file.
func tarball(bin []byte, src sources, top string, mtime time.Time) ([]byte, error) {
	es := []entry{
		file("cityedge", 0o755, bin),
		file("cityedge.service", 0o644, src.unit),
		file("60-cityedge.rules", 0o644, src.udev),
		file("cityedge.example.toml", 0o644, src.example),
		file("install.sh", 0o755, src.install),
		file("README.md", 0o644, src.readme),
	}
	if src.license != nil {
		es = append(es, file("LICENSE", 0o644, src.license))
	}
	es = append(es, dir(top))
	for i := range es {
		if !es[i].dir {
			es[i].name = top + "/" + es[i].name
		}
	}
	return tarGz(withParents(es), "", mtime)
}

// debMeta is what the control file says beyond the files.
type debMeta struct {
	version    string // Debian version
	arch       string // Debian architecture
	maintainer string
	hint       string // one line on which hardware this build is for
}

// debContents lists the data members of the package, conffiles flagged.
func debContents(bin []byte, src sources) (es []entry, conffiles []string) {
	copyright := []byte("Upstream-Name: cityedge\nSource: https://github.com/cityedge/cityedge\n\n")
	if src.license != nil {
		copyright = append(copyright, src.license...)
	} else {
		copyright = append(copyright, "The source tree carried no LICENSE file when this package was built.\n"...)
	}
	es = []entry{
		file(binPath, 0o755, bin),
		file(unitPath, 0o644, src.unit),
		file(udevPath, 0o644, src.udev),
		// The configuration is a conffile: dpkg keeps the admin's edits on
		// upgrade and asks before replacing an edited one.
		file(configPath, 0o644, src.example),
		file(docDir+"/README.md", 0o644, src.readme),
		file(docDir+"/cityedge.example.toml", 0o644, src.example),
		file(docDir+"/copyright", 0o644, copyright),
	}
	return withParents(es), []string{"/" + configPath}
}

// deb builds the binary package: an ar archive of debian-binary,
// control.tar.gz and data.tar.gz (deb(5)).
func deb(bin []byte, src sources, m debMeta, mtime time.Time) ([]byte, error) {
	data, conffiles := debContents(bin, src)
	isConf := map[string]bool{}
	for _, c := range conffiles {
		isConf[strings.TrimPrefix(c, "/")] = true
	}
	var md5sums bytes.Buffer
	installedKiB := 0
	for _, e := range data {
		installedKiB += (len(e.body) + 1023) / 1024
		if e.dir {
			installedKiB++
			continue
		}
		if !isConf[e.name] {
			fmt.Fprintf(&md5sums, "%x  %s\n", md5.Sum(e.body), e.name)
		}
	}

	control := fmt.Sprintf(`Package: %s
Version: %s
Architecture: %s
Maintainer: %s
Installed-Size: %d
Depends: passwd, init-system-helpers (>= 1.54~)
Section: net
Priority: optional
Homepage: https://github.com/cityedge/cityedge
Description: edge agent for smart-city gateways (sensors to MQTT with mutual TLS)
 cityedge reads the parking and environmental sensors wired to a gateway
 (GPIO vehicle detectors, I2C weather, air-quality and light sensors), keeps
 every reading in a durable, bounded on-disk buffer while the network is
 away, and delivers the readings over MQTT with mutual TLS as SenML JSON.
 .
 %s
 Runs as the system user cityedge under a hardened systemd unit; the buffer
 lives in /var/lib/cityedge and is kept on upgrade and removal (only purge
 deletes it).
`, packageName, m.version, m.arch, m.maintainer, installedKiB, m.hint)

	ctl := []entry{
		file("control", 0o644, []byte(control)),
		file("conffiles", 0o644, []byte(strings.Join(conffiles, "\n")+"\n")),
		file("md5sums", 0o644, md5sums.Bytes()),
	}
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		b, err := maintainerScripts.ReadFile("debian/" + name)
		if err != nil {
			return nil, err
		}
		ctl = append(ctl, file(name, 0o755, b))
	}
	sort.Slice(ctl, func(i, j int) bool { return ctl[i].name < ctl[j].name })
	// The control archive holds "./" itself and its members, as dpkg-deb
	// writes it.
	controlTar, err := tarGz(append([]entry{dir("")}, ctl...), "./", mtime)
	if err != nil {
		return nil, err
	}
	dataTar, err := tarGz(append([]entry{dir("")}, data...), "./", mtime)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = writeAr(&out, mtime,
		arMember{"debian-binary", []byte("2.0\n")},
		arMember{"control.tar.gz", controlTar},
		arMember{"data.tar.gz", dataTar},
	)
	return out.Bytes(), err
}
