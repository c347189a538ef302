package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// entry is one member of an archive. Everything that ends up in the bytes is
// here: no owner, time or mode is taken from the build machine's files, which
// is what makes two builds of one commit identical.
type entry struct {
	name string // slash-separated, no leading "./" or "/"; directories too
	mode int64  // permission bits only
	dir  bool
	body []byte
}

// file and dir build entries.
func file(name string, mode int64, body []byte) entry {
	return entry{name: name, mode: mode, body: body}
}

func dir(name string) entry { return entry{name: name, mode: 0o755, dir: true} }

// withParents returns es plus an entry for every parent directory not listed,
// sorted by name so that a parent always precedes its children.
func withParents(es []entry) []entry {
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.name] = true
	}
	out := append([]entry(nil), es...)
	for _, e := range es {
		for p := path.Dir(e.name); p != "." && p != "/" && !seen[p]; p = path.Dir(p) {
			seen[p] = true
			out = append(out, dir(p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// tarGz writes es as a gzip-compressed ustar archive: entries in the given
// order, owner root:root (0:0), every time set to mtime, and a gzip header
// without name or time (what `gzip -n` does). prefix is prepended to each
// name ("./" for Debian members, "" or a top directory for tarballs).
func tarGz(es []entry, prefix string, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if err := writeTar(zw, es, prefix, mtime); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeTar(w io.Writer, es []entry, prefix string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range es {
		h := &tar.Header{
			Name:    prefix + e.name,
			Mode:    e.mode,
			Uid:     0,
			Gid:     0,
			Uname:   "root",
			Gname:   "root",
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			if !strings.HasSuffix(h.Name, "/") {
				h.Name += "/"
			}
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", h.Name, err)
		}
		if !e.dir {
			if _, err := tw.Write(e.body); err != nil {
				return fmt.Errorf("tar %s: %w", h.Name, err)
			}
		}
	}
	return tw.Close()
}

// arMember is one member of a Unix ar archive, the container of a .deb.
type arMember struct {
	name string
	body []byte
}

// writeAr writes the common ar format dpkg reads (deb(5)): the global
// header, then per member a 60-byte header (name, mtime, uid 0, gid 0, mode
// 100644, size) and the data padded to an even length with '\n'.
func writeAr(w io.Writer, mtime time.Time, members ...arMember) error {
	if _, err := io.WriteString(w, "!<arch>\n"); err != nil {
		return err
	}
	for _, m := range members {
		if len(m.name) > 16 || strings.ContainsAny(m.name, " /") {
			return fmt.Errorf("ar member name %q does not fit the 16-byte field", m.name)
		}
		h := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, mtime.Unix(), 0, 0, "100644", len(m.body))
		if len(h) != 60 {
			return fmt.Errorf("ar header for %s is %d bytes, want 60", m.name, len(h))
		}
		if _, err := io.WriteString(w, h); err != nil {
			return err
		}
		if _, err := w.Write(m.body); err != nil {
			return err
		}
		if len(m.body)%2 == 1 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
	}
	return nil
}
