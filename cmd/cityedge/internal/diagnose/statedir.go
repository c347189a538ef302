package diagnose

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// serviceAccess judges agent.state_dir and what lies in it for the service
// user (its owner, see serviceUID) when --diagnose runs as someone else,
// usually root: root may write anything, so "writable by me" says nothing
// about whether the service can open its buffer. It returns one finding per
// problem, each naming the path and the fix that gives the file to the
// service user (never one that takes it away).
func serviceAccess(dir string) []string {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil
	}
	uid, gid := st.Uid, st.Gid
	if int(uid) == os.Geteuid() {
		return nil // the service user runs --diagnose: access() already judged it
	}
	var out []string
	if !ownerMay(st, uid, gid, unix.S_IWUSR|unix.S_IXUSR) {
		out = append(out, fmt.Sprintf("%s is mode %#o: its owner, uid %d (the service user), cannot create files in it (chmod 700 %s)",
			dir, st.Mode&0o7777, uid, dir))
	}
	// The agent opens everything it wrote here for writing again (the
	// buffer, remote.toml and its last-good copy, the clock file, the
	// certificates installed remotely). A file another user owns and the
	// service may not write stops it at the next start.
	for _, d := range []string{dir, filepath.Join(dir, "certs")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			var fst unix.Stat_t
			if err := unix.Lstat(p, &fst); err != nil {
				continue
			}
			if fst.Mode&unix.S_IFMT == unix.S_IFLNK || fst.Mode&unix.S_IFMT == unix.S_IFSOCK {
				continue // the control socket is recreated at each start
			}
			need := uint32(unix.S_IWUSR)
			if fst.Mode&unix.S_IFMT == unix.S_IFDIR {
				need |= unix.S_IXUSR
			}
			if !ownerMay(fst, uid, gid, need) {
				out = append(out, fmt.Sprintf("%s belongs to uid %d, mode %#o: the service user (uid %d) cannot write it (chown %d:%d %s)",
					p, fst.Uid, fst.Mode&0o7777, uid, uid, gid, p))
			}
		}
	}
	slices.Sort(out)
	return out
}

// ownerMay reports whether user uid (primary group gid) has the permission
// bits need (given as owner bits) on a file with stat st, by the mode
// bits alone, as the kernel checks them for an unprivileged process.
func ownerMay(st unix.Stat_t, uid, gid uint32, need uint32) bool {
	mode := st.Mode & 0o777
	switch {
	case st.Uid == uid:
		return mode&need == need
	case st.Gid == gid:
		return (mode<<3)&need == need
	default:
		return (mode<<6)&need == need
	}
}
