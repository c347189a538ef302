//go:build !unix

package buffer

import (
	"fmt"
	"os"
	"time"
)

// lockFile opens path; on systems without flock, bbolt's own lock (taken
// when the file is handed to it) is the only guard.
func lockFile(path string, _ time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("buffer: open %s: %w", path, err)
	}
	return f, nil
}
