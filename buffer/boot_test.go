package buffer

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestBootStampKept: a record's boot stamp comes back with it, read before
// its commit (from memory) and after a restart (from the file).
func TestBootStampKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	q := openT(t, path, Options{CommitInterval: time.Hour})
	stamp := &BootStamp{ID: 0xfeedf00d, Since: 12*time.Minute + 345*time.Millisecond}
	done := make(chan error, 1)
	go func() {
		_, err := q.Append(context.Background(), []Record{{Key: "air-1", Data: []byte("a")}, {Key: "air-1", Data: []byte("b"), Boot: stamp}})
		done <- err
	}()
	var es []Entry
	for len(es) < 2 {
		var err error
		if es, err = q.ReadAfter(0, 10, 0); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, es []Entry) {
		t.Helper()
		if len(es) != 2 || es[0].Boot != nil || es[1].Boot == nil || *es[1].Boot != *stamp {
			t.Fatalf("%s: read %d records, boot stamps %+v", when, len(es), es)
		}
	}
	check("before the commit", es)
	closeT(t, q) // commits
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	q = openT(t, path, Options{})
	defer closeT(t, q)
	check("after a restart", readAll(t, q))
}
