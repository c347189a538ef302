package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// target is one gateway architecture: the name `make cross` gives its binary
// (dist/cityedge-linux-<name>), the Go settings it must have been built with,
// and its Debian architecture.
type target struct {
	name    string // armv6, armv7, arm64, amd64
	goarch  string
	goarm   string // "6" or "7" for arm, "" otherwise
	machine elf.Machine
	debArch string
	// debSuffix tells two packages of one Debian architecture apart in
	// their file names: Debian's armhf is ARMv7, while Raspberry Pi OS's
	// armhf userland is ARMv6 (Pi Zero and Pi 1 have no ARMv7 core).
	debSuffix string
	hint      string // for the package description
}

var targets = []target{
	{name: "armv6", goarch: "arm", goarm: "6", machine: elf.EM_ARM, debArch: "armhf", debSuffix: "-armv6",
		hint: "ARMv6 build for Raspberry Pi OS (32-bit): every Raspberry Pi including Zero and 1."},
	{name: "armv7", goarch: "arm", goarm: "7", machine: elf.EM_ARM, debArch: "armhf",
		hint: "ARMv7 build for Debian armhf (Raspberry Pi 2 and later, other ARMv7 boards)."},
	{name: "arm64", goarch: "arm64", machine: elf.EM_AARCH64, debArch: "arm64",
		hint: "64-bit ARM build (Raspberry Pi 3/4/5 and other boards with a 64-bit OS)."},
	{name: "amd64", goarch: "amd64", machine: elf.EM_X86_64, debArch: "amd64",
		hint: "x86-64 build (industrial PCs)."},
}

func targetByName(name string) (target, bool) {
	for _, t := range targets {
		if t.name == name {
			return t, true
		}
	}
	return target{}, false
}

// inspect checks that the binary at path is a static linux build for t that
// carries version. Packaging the wrong file under an architecture's name, or
// a binary left over from another version, would ship gateways something
// other than the package says; this is where it stops. (Go records no
// -ldflags in -trimpath builds, so the version is looked for in the bytes:
// -X stores the string verbatim.)
func inspect(path string, t target, version string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	machine := f.Machine
	interp := f.Section(".interp") != nil
	f.Close()
	if machine != t.machine {
		return fmt.Errorf("%s: built for %v, want %v (%s)", path, machine, t.machine, t.name)
	}
	if interp {
		return fmt.Errorf("%s: dynamically linked; gateways need the static CGO_ENABLED=0 build of `make cross`", path)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: no Go build information: %w", path, err)
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	switch {
	case set["GOOS"] != "linux":
		return fmt.Errorf("%s: GOOS=%s, want linux", path, set["GOOS"])
	case set["GOARCH"] != t.goarch:
		return fmt.Errorf("%s: GOARCH=%s, want %s (%s)", path, set["GOARCH"], t.goarch, t.name)
	case t.goarm != "" && strings.TrimSuffix(set["GOARM"], ",softfloat") != t.goarm:
		return fmt.Errorf("%s: GOARM=%s, want %s (%s)", path, set["GOARM"], t.goarm, t.name)
	case set["CGO_ENABLED"] != "0":
		return fmt.Errorf("%s: CGO_ENABLED=%s, want 0 (static)", path, set["CGO_ENABLED"])
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte(version)) {
		return fmt.Errorf("%s: does not contain the version string %q; rebuild with `make cross` for this version", path, version)
	}
	return nil
}

var (
	bareHash = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
	describe = regexp.MustCompile(`^(.*?)(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)
)

// debVersion turns a `git describe --tags --always --dirty` version into a
// Debian one that dpkg orders the same way:
//
//	v1.2.3                  → 1.2.3
//	v1.2.3-4-gabc1234       → 1.2.3+4+gabc1234   (after 1.2.3)
//	v2.0.0-rc1              → 2.0.0~rc1          (before 2.0.0)
//	13e2746-dirty (untagged) → 0+git13e2746+dirty (before any release)
func debVersion(v string) (string, error) {
	m := describe.FindStringSubmatch(strings.TrimPrefix(v, "v"))
	base, commits, hash, dirty := m[1], m[2], m[3], m[4]
	var d string
	if base == "" || base[0] < '0' || base[0] > '9' || bareHash.MatchString(base) {
		d = "0+git" + strings.ReplaceAll(base, "-", "+")
	} else {
		d = strings.ReplaceAll(base, "-", "~")
	}
	if commits != "" {
		d += "+" + commits + "+g" + hash
	}
	if dirty != "" {
		d += "+dirty"
	}
	for _, r := range d {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune(".+~", r)) {
			return "", fmt.Errorf("version %q: %q cannot appear in a Debian version", v, r)
		}
	}
	return d, nil
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH, the time every archive member
// gets (dist.sh sets it to the commit time, `git log -1 --format=%ct`).
func sourceDateEpoch(env string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(env), 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a Unix time in seconds; set it to $(git log -1 --format=%%ct)", env)
	}
	return time.Unix(n, 0).UTC(), nil
}
