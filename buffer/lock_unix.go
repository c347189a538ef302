//go:build unix

package buffer

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

const lockRetry = 50 * time.Millisecond

// lockFile opens (creating, mode 0600) and exclusively flocks path, the
// same lock bbolt takes, waiting up to timeout. If the file was replaced
// while we waited (salvage or compaction by the holder), it locks the new
// one instead.
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
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
