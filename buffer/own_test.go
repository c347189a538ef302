//go:build unix

package buffer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRootRunKeepsOwner runs the queue as root in a directory owned by
// another user (state_dir belongs to the service user): the file it
// creates, a compaction's new file and a salvage's new file all belong to
// that user, so the service can open them afterwards.
func TestRootRunKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root (CITYEDGE_REQUIRE_ROOT=1)")
		}
		t.Skip("needs root to create files for another user; CITYEDGE_REQUIRE_ROOT=1 makes this a failure")
	}
	const uid, gid = 4242, 4343
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "buffer.db")
	owners := func(when string) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
				t.Errorf("%s: %s belongs to %d:%d, want the directory's owner %d:%d", when, e.Name(), st.Uid, st.Gid, uid, gid)
			}
		}
	}

	q := openT(t, path, Options{MaxBytes: 64 << 20})
	owners("new file")
	var last uint64
	for i := range 300 {
		recs := make([]Record, 100)
		for j := range recs {
			recs[j] = Record{Key: "air-1", Data: payload("air-1", i*100+j, 141)}
		}
		last = appendT(t, q, recs...) + 99
	}
	ino := inode(t, path)
	if err := q.Ack(seqRange(last-29_999, last)...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return q.Stats().FileBytes < 1<<20 })
	if inode(t, path) == ino {
		t.Fatal("the file was not replaced: no compaction happened")
	}
	owners("after compaction")
	appendT(t, q, Record{Key: "air-1", Data: []byte("kept")})
	closeT(t, q)

	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64), 0); err != nil { // meta page 0
		t.Fatal(err)
	}
	f.Close()
	q = openT(t, path, Options{MaxBytes: 64 << 20})
	defer closeT(t, q)
	if q.Stats().Salvage == nil || len(readAll(t, q)) != 1 {
		t.Fatalf("no salvage of the damaged file (stats %+v)", q.Stats())
	}
	owners("after salvage")
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func seqRange(from, to uint64) []uint64 {
	out := make([]uint64, 0, to-from+1)
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
