// Package atomicfile replaces small files so that a power cut leaves either
// the old or the new content, never a mix: the agent's replay store, metrics
// text file, remote configuration and zone counters all go through it.
package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path with data: a temporary file in the same directory
// (a dot file named after path, which collectors such as node_exporter's
// textfile reader ignore), written, given perm, fsynced, renamed over path,
// and the directory fsynced.
//
// Run as root (a technician starting the agent by hand), the file is given
// to the owner of its directory, so that the service user is never locked
// out of a file in its own state directory.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		if err = f.Chmod(perm); err == nil {
			if err = chownLikeDir(f, dir); err == nil {
				err = f.Sync()
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, so that a rename or a new link in it
// survives a power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// chownLikeDir gives f to the owner of dir when running as root.
func chownLikeDir(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (st.Uid == 0 && st.Gid == 0) {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
