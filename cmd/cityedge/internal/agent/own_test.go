package agent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOwnLikeStateDir: run as root, a file the agent creates in state_dir
// (the control socket when no runtime directory exists) goes to the owner
// of state_dir; a file elsewhere is left alone.
func TestOwnLikeStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root (CITYEDGE_REQUIRE_ROOT=1)")
		}
		t.Skip("needs root to give files to another user; CITYEDGE_REQUIRE_ROOT=1 makes this a failure")
	}
	base := t.TempDir()
	state := filepath.Join(base, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, 4242, 4243); err != nil {
		t.Fatal(err)
	}
	inside, outside := filepath.Join(state, "cityedge.sock"), filepath.Join(base, "other")
	for _, p := range []string{inside, outside} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := ownLikeStateDir(state, p); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string][2]uint32{inside: {4242, 4243}, outside: {0, 0}} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}
}
