package buffer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fingerprint is everything Inspect must leave as it was: content, mode,
// owner and size of the file, and the names in its directory.
func fingerprint(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return fmt.Sprintf("sha256 %x mode %v uid %d gid %d size %d dir %v", sha256.Sum256(b), fi.Mode(), st.Uid, st.Gid, fi.Size(), names)
}

// serviceOwned gives the file to another user, as a service's state file
// is, when the test runs as root.
func serviceOwned(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
}

func inspectUnchanged(t *testing.T, path string) Inspection {
	t.Helper()
	before := fingerprint(t, path)
	in, err := Inspect(path)
	if err != nil {
		t.Fatalf("Inspect(%s): %v", path, err)
	}
	if after := fingerprint(t, path); after != before {
		t.Fatalf("Inspect changed the file:\nbefore %s\nafter  %s", before, after)
	}
	return in
}

// TestInspectWritesNothing: a sound file above a lowered bound, a damaged
// file, a file of format 1 and a file a running agent holds are reported,
// and none of them changes by a byte, mode or owner.
func TestInspectWritesNothing(t *testing.T) {
	t.Run("over a lowered bound", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "buffer.db")
		q := openT(t, path, Options{MaxBytes: 8 << 20})
		for i := range 30 {
			recs := make([]Record, 500)
			for j := range recs {
				recs[j] = Record{Key: "air-1", Priority: Class(j % 2), Data: payload("air-1", i*500+j, 150)}
			}
			appendT(t, q, recs...)
		}
		st := q.Stats()
		closeT(t, q)
		serviceOwned(t, path)
		in := inspectUnchanged(t, path)
		if in.Locked || in.Damaged != "" || in.Format != FormatVersion {
			t.Fatalf("Inspect = %+v", in)
		}
		if in.Count != st.Count || in.Bytes != st.Bytes || in.OldestSeq != st.OldestSeq || in.NextSeq != st.NextSeq ||
			!in.OldestTime.Equal(st.OldestTime) || in.Epoch != st.Epoch || in.FileBytes != st.FileBytes {
			t.Errorf("Inspect = %+v\nStats   = %+v", in, st)
		}
		if in.Bytes <= 1<<20 {
			t.Fatalf("live bytes %d: the file is not over a 1 MiB bound; the test proves nothing", in.Bytes)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		path, _ := damagedFile(t)
		serviceOwned(t, path)
		in := inspectUnchanged(t, path)
		if in.Damaged == "" || !strings.Contains(in.NextStart, "salvage") || in.Recoverable != 100 {
			t.Fatalf("Inspect of a damaged file = %+v; want it damaged, 100 records recoverable", in)
		}
	})
	t.Run("format 1", func(t *testing.T) {
		path, m := unpackFixture(t, "v1-983176d")
		in := inspectUnchanged(t, path)
		if in.Format != 1 || in.Count != uint64(len(m.Entries)) || in.DroppedTotal != m.DroppedTotal {
			t.Fatalf("Inspect = %+v; want format 1, %d records, %d dropped", in, len(m.Entries), m.DroppedTotal)
		}
	})
	t.Run("agent running", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "buffer.db")
		q := openT(t, path, Options{})
		defer closeT(t, q)
		appendT(t, q, Record{Key: "a", Data: []byte("x")})
		in := inspectUnchanged(t, path)
		if !in.Locked {
			t.Fatalf("Inspect while the queue is open = %+v, want Locked", in)
		}
		appendT(t, q, Record{Key: "a", Data: []byte("y")}) // the agent goes on
	})
}

// damagedFile writes 100 records and overwrites meta page 0, which Open
// salvages.
func damagedFile(t *testing.T) (string, uint64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openT(t, path, Options{})
	var first uint64
	for i := range 100 {
		s := appendT(t, q, Record{Key: "air-1", Data: payload("air-1", i, 100)})
		if i == 0 {
			first = s
		}
	}
	closeT(t, q)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, first
}

// TestInspectRefuses: a missing file and a bbolt file that is not a buffer
// are errors, and Inspect creates nothing.
func TestInspectRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := Inspect(filepath.Join(dir, "buffer.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Inspect of a missing file: %v, want ErrNotExist", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Inspect created %v", ents)
	}
	path := filepath.Join(dir, "other.db")
	writeForeignBolt(t, path)
	before := fingerprint(t, path)
	if _, err := Inspect(path); err == nil || !strings.Contains(err.Error(), "not a cityedge buffer file") {
		t.Errorf("Inspect of a foreign bbolt file: %v", err)
	}
	if after := fingerprint(t, path); after != before {
		t.Errorf("Inspect changed a foreign file")
	}
}
