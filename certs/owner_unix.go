//go:build unix

package certs

import (
	"io/fs"
	"syscall"
)

type fileIdentity struct {
	dev, ino uint64
	uid      int
}

// fileID returns the device, inode and owner of a file from its stat data.
func fileID(fi fs.FileInfo) (fileIdentity, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdentity{}, false
	}
	return fileIdentity{dev: uint64(st.Dev), ino: uint64(st.Ino), uid: int(st.Uid)}, true
}
