package buffer

import (
	"context"
	"path/filepath"
	"testing"
)

// TestCountDropped: drops made before the queue are in Stats at once and
// persist across a reopen, beside the queue's own counters.
func TestCountDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffer.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	q.CountDropped("air-1", 3)
	q.CountDropped("air-2", 0)
	if st := q.Stats(); st.DroppedTotal != 3 || st.Dropped["air-1"] != 3 || len(st.Dropped) != 1 {
		t.Fatalf("stats after CountDropped: total %d, %v", st.DroppedTotal, st.Dropped)
	}
	if _, err := q.Append(context.Background(), []Record{{Key: "air-1", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st := q.Stats(); st.DroppedTotal != 3 || st.Dropped["air-1"] != 3 {
		t.Fatalf("after reopen: total %d, %v", st.DroppedTotal, st.Dropped)
	}
}
