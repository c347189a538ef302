// Command dist turns the static binaries of `make cross` into what a gateway
// installs: for each architecture a release tarball (binary, systemd unit,
// udev rule, example configuration, install.sh, README) and a Debian package,
// plus SHA256SUMS over them.
//
// The output is reproducible: every archive member gets root:root, fixed
// permissions and the time SOURCE_DATE_EPOCH (the commit time), members are
// sorted, gzip headers carry no name or time, and nothing is read from the
// build machine but the files themselves. Building one commit twice gives the
// same bytes (with the same Go toolchain: the compressor is Go's).
//
// The .deb is written here rather than by dpkg-deb or nfpm so that `make dist`
// runs on any machine with Go and needs no new module; its tests check the
// result with dpkg-deb and install it with dpkg into a scratch root.
//
// Usage (scripts/dist.sh sets all of this up):
//
//	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
//	go run ./scripts/dist -version "$(git describe --tags --always --dirty)" [-dist dist] [-targets armv6,arm64]
package main

import (
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Getenv("SOURCE_DATE_EPOCH"), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "dist: %v\n", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	version    string
	repo       string
	dist       string
	targets    []target
	maintainer string
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	var names string
	fs := flag.NewFlagSet("dist", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.version, "version", "", "version the binaries were built with (the Makefile's VERSION); required")
	fs.StringVar(&o.repo, "repo", ".", "repository root (unit, example config, install.sh, README.md, LICENSE)")
	fs.StringVar(&o.dist, "dist", "dist", "directory with cityedge-linux-<arch> binaries; packages are written there")
	fs.StringVar(&names, "targets", "armv6,armv7,arm64,amd64", "architectures to package")
	fs.StringVar(&o.maintainer, "maintainer", "cityedge maintainers <cityedge@users.noreply.github.com>", "Maintainer field of the .deb")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.version == "" {
		return o, errors.New("-version is required (the version `make cross` stamped into the binaries)")
	}
	seen := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		t, ok := targetByName(strings.TrimSpace(n))
		if !ok {
			return o, fmt.Errorf("-targets: unknown architecture %q (known: armv6, armv7, arm64, amd64)", n)
		}
		if !seen[t.name] {
			seen[t.name] = true
			o.targets = append(o.targets, t)
		}
	}
	return o, nil
}

func run(args []string, epochEnv string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	mtime, err := sourceDateEpoch(epochEnv)
	if err != nil {
		return err
	}
	debVer, err := debVersion(o.version)
	if err != nil {
		return err
	}
	src, err := readSources(o.repo)
	if err != nil {
		return err
	}
	made, err := build(o, src, debVer, mtime)
	if err != nil {
		return err
	}
	sums, err := writeSums(o.dist, made)
	if err != nil {
		return err
	}
	for _, f := range made {
		fmt.Fprintf(stdout, "dist: %s\n", filepath.Join(o.dist, f))
	}
	fmt.Fprintf(stdout, "dist: %s\n", sums)
	return nil
}

// artifactNames are the file names build writes for t.
func artifactNames(t target, version, debVer string) (tgz, debFile string) {
	return fmt.Sprintf("%s_%s_linux_%s.tar.gz", packageName, version, t.name),
		fmt.Sprintf("%s_%s_%s%s.deb", packageName, debVer, t.debArch, t.debSuffix)
}

// build writes a tarball and a .deb per target and returns their names.
func build(o options, src sources, debVer string, mtime time.Time) ([]string, error) {
	var made []string
	for _, t := range o.targets {
		binFile := filepath.Join(o.dist, "cityedge-linux-"+t.name)
		if err := inspect(binFile, t, o.version); err != nil {
			return nil, err
		}
		bin, err := os.ReadFile(binFile)
		if err != nil {
			return nil, err
		}
		tgzName, debName := artifactNames(t, o.version, debVer)
		tgz, err := tarball(bin, src, strings.TrimSuffix(tgzName, ".tar.gz"), mtime)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tgzName, err)
		}
		pkg, err := deb(bin, src, debMeta{version: debVer, arch: t.debArch, maintainer: o.maintainer, hint: t.hint}, mtime)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", debName, err)
		}
		for _, f := range []struct {
			name string
			data []byte
		}{{tgzName, tgz}, {debName, pkg}} {
			if err := writeFile(filepath.Join(o.dist, f.name), f.data); err != nil {
				return nil, err
			}
			made = append(made, f.name)
		}
	}
	return made, nil
}

// writeSums writes SHA256SUMS for the named files in dir, in the format
// `sha256sum -c` reads, sorted by name.
func writeSums(dir string, names []string) (string, error) {
	names = append([]string(nil), names...)
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%x  %s\n", sha256.Sum256(data), n)
	}
	path := filepath.Join(dir, "SHA256SUMS")
	return path, writeFile(path, []byte(b.String()))
}

// writeFile replaces path by rename, so that an interrupted run never leaves
// a truncated package behind under the final name.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
