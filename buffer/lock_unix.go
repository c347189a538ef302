//go:build unix

package buffer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

const lockRetry = 50 * time.Millisecond

// openOwned opens a file like os.OpenFile. A file it creates while running
// as root gets the owner (user and group) of its directory: state_dir
// belongs to the service user, and a run as root (by hand, --enroll) must
// never leave that user a file it cannot open.
func openOwned(name string, flag int, perm os.FileMode) (*os.File, error) {
	_, statErr := os.Lstat(name)
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&os.O_CREATE != 0 && errors.Is(statErr, os.ErrNotExist) {
		if err := ownLikeDir(f, filepath.Dir(name)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// ownLikeDir gives f to the owner of dir when running as root.
func ownLikeDir(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil // only root can create a file another user cannot open
	}
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("buffer: stat %s: %w", dir, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("buffer: stat %s: %w", f.Name(), err)
	}
	d, ok1 := di.Sys().(*syscall.Stat_t)
	s, ok2 := fi.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || (s.Uid == d.Uid && s.Gid == d.Gid) {
		return nil
	}
	if err := f.Chown(int(d.Uid), int(d.Gid)); err != nil {
		return fmt.Errorf("buffer: give %s to the owner of %s (uid %d, gid %d): %w", f.Name(), dir, d.Uid, d.Gid, err)
	}
	return nil
}

// lockFile opens (creating, mode 0600) and exclusively flocks path, the
// same lock bbolt takes, waiting up to timeout. If the file was replaced
// while we waited (salvage or compaction by the holder), it locks the new
// one instead.
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := openOwned(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("buffer: open %s: %w", path, err)
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
				break
			}
			time.Sleep(lockRetry)
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("%w: another process holds %s (waited %s)", ErrLocked, path, timeout)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("buffer: lock %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return f, nil
		}
		f.Close()
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s keeps being replaced by another process", ErrLocked, path)
		}
	}
}

// lockShared takes a shared lock on f without waiting; locked reports that
// another process holds the exclusive lock (a running agent).
func lockShared(f *os.File) (locked bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	return false, nil
}
