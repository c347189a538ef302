//go:build !unix

package buffer

import (
	"fmt"
	"os"
	"time"
)

// openOwned is os.OpenFile: file ownership is a unix matter.
func openOwned(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// lockFile opens path; on systems without flock, bbolt's own lock (taken
// when the file is handed to it) is the only guard.
func lockFile(path string, _ time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("buffer: open %s: %w", path, err)
	}
	return f, nil
}

// lockShared cannot tell whether another process holds the file here;
// bbolt's own read-only lock is the only guard.
func lockShared(*os.File) (locked bool, err error) { return false, nil }
