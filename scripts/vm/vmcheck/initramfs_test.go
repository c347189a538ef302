package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

type cpioEntry struct {
	mode, uid, gid, rdevMajor, rdevMinor uint64
	data                                 []byte
}

// readNewc parses a newc archive as the kernel does (buffer-format.rst).
func readNewc(t *testing.T, b []byte) (map[string]cpioEntry, []string) {
	t.Helper()
	out := map[string]cpioEntry{}
	var order []string
	off := 0
	field := func(i int) uint64 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header at %d: %v", off, err)
		}
		return v
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		e := cpioEntry{mode: field(1), uid: field(2), gid: field(3), rdevMajor: field(9), rdevMinor: field(10)}
		size, namesize := int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		off = align(off + 110 + namesize)
		e.data = b[off : off+size]
		off = align(off + size)
		order = append(order, name)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out, order
		}
		out[name] = e
	}
}

func TestWriteInitramfs(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc/cityedge"), 0o755))
	must(os.WriteFile(filepath.Join(root, "init"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/cityedge/client.key"), []byte("secret"), 0o600))
	must(os.Symlink("busybox", filepath.Join(root, "sh")))
	out := filepath.Join(t.TempDir(), "initramfs.gz")
	must(writeInitramfs(root, out))

	f, err := os.Open(out)
	must(err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	must(err)
	raw, err := io.ReadAll(zr)
	must(err)
	entries, order := readNewc(t, raw)

	tests := []struct {
		name string
		mode uint64
		data string
	}{
		{"init", modeReg | 0o755, "#!/bin/sh\n"},
		{"etc", modeDir | 0o755, ""},
		{"etc/cityedge/client.key", modeReg | 0o600, "secret"},
		{"sh", modeLink | 0o777, "busybox"},
		{"dev", modeDir | 0o755, ""},
		{"dev/console", modeChr | 0o600, ""},
	}
	for _, tc := range tests {
		e, ok := entries[tc.name]
		if !ok {
			t.Errorf("%s missing; archive has %v", tc.name, order)
			continue
		}
		if e.mode != tc.mode || e.uid != 0 || e.gid != 0 || !bytes.Equal(e.data, []byte(tc.data)) {
			t.Errorf("%s: mode %o uid %d gid %d data %q, want mode %o, root, %q", tc.name, e.mode, e.uid, e.gid, e.data, tc.mode, tc.data)
		}
	}
	if c := entries["dev/console"]; c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.rdevMajor, c.rdevMinor)
	}
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	if pos["etc"] > pos["etc/cityedge"] || pos["etc/cityedge"] > pos["etc/cityedge/client.key"] {
		t.Errorf("a directory comes after its contents: %v", order)
	}
}
