package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ownLikeStateDir gives a file the agent created inside state_dir to the
// owner of state_dir when the agent runs as root (a first start by hand, a
// technician's sudo): the service, which runs as that user, must never find
// a file of root's in its directory that it cannot replace or read. The
// buffer does the same for its own files. Outside state_dir, or not as root,
// it does nothing.
func ownLikeStateDir(stateDir, path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	rel, err := filepath.Rel(stateDir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil
	}
	fi, err := os.Stat(stateDir)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("give %s to the owner of %s (uid %d): %w", path, stateDir, st.Uid, err)
	}
	return nil
}
