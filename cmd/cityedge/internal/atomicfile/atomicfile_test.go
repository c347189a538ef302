package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	for _, content := range []string{"one", "two, longer"} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// TestWriteAsRootGivesDirOwner: a root run never leaves a file the service
// user cannot replace.
func TestWriteAsRootGivesDirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root (CITYEDGE_REQUIRE_ROOT=1)")
		}
		t.Skip("SKIP: needs root")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 4242, 4243); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4242 || st.Gid != 4243 {
		t.Errorf("owner %d:%d, want 4242:4243", st.Uid, st.Gid)
	}
}
