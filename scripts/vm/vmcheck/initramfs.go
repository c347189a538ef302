package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// writeInitramfs packs the tree at root into a gzip-compressed cpio archive
// in the "newc" format the kernel unpacks (Documentation/driver-api/
// early-userspace/buffer-format.rst). Every entry belongs to root:root and
// keeps its permission bits (the agent's key must stay 0600). The archive
// also holds /dev/console, which the kernel opens for /init before any
// devtmpfs is mounted, so no root privileges are needed to build it.
func writeInitramfs(root, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	cw := &cpioWriter{w: zw, ino: 1}

	var paths []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	sort.Strings(paths) // directories before their contents
	hasDev := false
	for _, path := range paths {
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		hasDev = hasDev || rel == "dev"
		fi, err := os.Lstat(path)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		perm := uint32(fi.Mode().Perm())
		switch {
		case fi.IsDir():
			err = cw.entry(rel, modeDir|perm, nil, 0, 0)
		case fi.Mode().IsRegular():
			var data []byte
			data, err = os.ReadFile(path)
			if err == nil {
				err = cw.entry(rel, modeReg|perm, data, 0, 0)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			var target string
			target, err = os.Readlink(path)
			if err == nil {
				err = cw.entry(rel, modeLink|0o777, []byte(target), 0, 0)
			}
		default:
			err = fmt.Errorf("%s: only directories, files and symlinks can be packed", path)
		}
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if !hasDev {
		if err := cw.entry("dev", modeDir|0o755, nil, 0, 0); err != nil {
			return err
		}
	}
	// /dev/console: character device 5:1 (Documentation/admin-guide/devices.txt).
	if err := cw.entry("dev/console", modeChr|0o600, nil, 5, 1); err != nil {
		return err
	}
	if err := cw.entry("TRAILER!!!", 0, nil, 0, 0); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

const (
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

type cpioWriter struct {
	w   io.Writer
	ino uint32
	off int64
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// entry writes one newc header, name and data.
func (c *cpioWriter) entry(name string, mode uint32, data []byte, rdevMajor, rdevMinor uint32) error {
	if strings.ContainsRune(name, 0) {
		return fmt.Errorf("initramfs: bad name %q", name)
	}
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	if name == "TRAILER!!!" {
		ino, nlink = 0, 1
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
	return c.err
}
