package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tinyBuild cross-builds a small program stamped like the agent, standing
// in for a `make cross` binary where only its ELF and build facts matter.
func tinyBuild(t *testing.T, dir, goarch, goarm, cgo, version string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	files := map[string]string{
		"go.mod":  "module tiny\n\ngo 1.25\n",
		"main.go": "package main\n\nimport _ \"os/user\"\n\nvar version = \"unset\"\n\nfunc main() { println(version) }\n",
	}
	for name, body := range files {
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, strings.Join([]string{"tiny", goarch, goarm, cgo}, "-"))
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.version="+version, "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm, "CGO_ENABLED="+cgo, "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s/%s: %v\n%s", goarch, goarm, err, b)
	}
	return out
}

func TestInspect(t *testing.T) {
	need(t, "go", "golang", "GO")
	dir := t.TempDir()
	const v = "v7.7.7-tiny"
	armv6 := tinyBuild(t, dir, "arm", "6", "0", v)
	armv7 := tinyBuild(t, dir, "arm", "7", "0", v)
	arm64 := tinyBuild(t, dir, "arm64", "", "0", v)
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tgt := func(n string) target { tg, _ := targetByName(n); return tg }
	tests := []struct {
		name    string
		path    string
		target  target
		version string
		wantErr string // "" means accepted
	}{
		{"armv6 as armv6", armv6, tgt("armv6"), v, ""},
		{"armv7 as armv7", armv7, tgt("armv7"), v, ""},
		{"arm64 as arm64", arm64, tgt("arm64"), v, ""},
		{"armv7 as armv6", armv7, tgt("armv6"), v, "GOARM=7, want 6"},
		{"armv6 as armv7", armv6, tgt("armv7"), v, "GOARM=6, want 7"},
		{"arm64 as armv6", arm64, tgt("armv6"), v, "built for EM_AARCH64, want EM_ARM"},
		{"armv6 as amd64", armv6, tgt("amd64"), v, "want EM_X86_64"},
		{"other version", arm64, tgt("arm64"), "v7.7.8", `does not contain the version string "v7.7.8"`},
		{"not a binary", notELF, tgt("arm64"), v, "not an ELF executable"},
		{"missing", filepath.Join(dir, "nope"), tgt("arm64"), v, "no such file"},
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		if _, err := exec.LookPath("gcc"); err == nil {
			tests = append(tests, struct {
				name    string
				path    string
				target  target
				version string
				wantErr string
			}{"cgo build", tinyBuild(t, dir, "amd64", "", "1", v), tgt("amd64"), v, "dynamically linked"})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := inspect(tc.path, tc.target, tc.version)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("inspect: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("inspect: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDebVersion(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"v1.2.3", "1.2.3", ""},
		{"1.2.3", "1.2.3", ""},
		{"v1.2.3-4-gabc1234", "1.2.3+4+gabc1234", ""},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4+gabc1234+dirty", ""},
		{"v2.0.0-rc1", "2.0.0~rc1", ""},
		{"v2.0.0-rc1-3-g0a0b0c0", "2.0.0~rc1+3+g0a0b0c0", ""},
		{"13e2746", "0+git13e2746", ""}, // untagged: a hash, even when it starts with a digit
		{"13e2746-dirty", "0+git13e2746+dirty", ""},
		{"dev", "0+gitdev", ""},
		{"v1.2.3_beta", "", "cannot appear"},
		{"v1 2", "", "cannot appear"},
	}
	for _, tc := range tests {
		got, err := debVersion(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("debVersion(%q) = %q, %v; want error %q", tc.in, got, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("debVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestDebVersionOrder: dpkg orders the converted versions as git describe
// means them: pre-releases before the release, follow-up commits after it,
// untagged builds before any release.
func TestDebVersionOrder(t *testing.T) {
	dpkg := need(t, "dpkg", "dpkg", "DPKG")
	pairs := [][2]string{
		{"13e2746", "v0.0.1"},
		{"fedcba9-dirty", "v0.0.1"},
		{"v0.9.0", "v1.2.3-rc1"},
		{"v1.2.3-rc1", "v1.2.3-rc1-2-g0a0b0c0"},
		{"v1.2.3-rc1-2-g0a0b0c0", "v1.2.3"},
		{"v1.2.3", "v1.2.3-dirty"},
		{"v1.2.3", "v1.2.3-4-gabc1234"},
		{"v1.2.3-4-gabc1234", "v1.2.3-10-g0000000"},
		{"v1.2.3-10-g0000000", "v1.2.4"},
	}
	for _, p := range pairs {
		a, _ := debVersion(p[0])
		b, _ := debVersion(p[1])
		if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s (%s) does not sort before %s (%s)", a, p[0], b, p[1])
		}
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		args    []string
		epoch   string
		wantErr string
	}{
		{[]string{}, "1", "-version is required"},
		{[]string{"-version", "v1", "-targets", "armv6,mips"}, "1", `unknown architecture "mips"`},
		{[]string{"-version", "v1", "extra"}, "1", `unexpected argument "extra"`},
		{[]string{"-version", "v1"}, "", "SOURCE_DATE_EPOCH"},
		{[]string{"-version", "v1"}, "yesterday", "SOURCE_DATE_EPOCH"},
		{[]string{"-version", "v1", "-repo", "/nonexistent"}, "1", "package source"},
	}
	for _, tc := range tests {
		err := run(tc.args, tc.epoch, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("run(%q, epoch %q) = %v, want error containing %q", tc.args, tc.epoch, err, tc.wantErr)
		}
	}
}
