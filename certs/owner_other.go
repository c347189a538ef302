//go:build !unix

package certs

import "io/fs"

type fileIdentity struct {
	dev, ino uint64
	uid      int
}

// fileID has no owner to report outside Unix; the agent targets Linux, and
// this only keeps the package building for tooling on other systems.
func fileID(fs.FileInfo) (fileIdentity, bool) { return fileIdentity{}, false }
