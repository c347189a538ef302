package buffer

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestStateSurvivesReopen: what SetState keeps is there after Close and
// Open, replaced by a newer value, removed by an empty one; files of every
// earlier format open with no state and keep state set on them; the bounds
// are refused with errors.
func TestStateSurvivesReopen(t *testing.T) {
	v1, _ := unpackFixture(t, "v1-983176d")
	for _, c := range []struct{ name, path string }{
		{"new file", filepath.Join(t.TempDir(), "buffer.db")},
		{"format 1 file", v1},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := openState(t, c.path)
			if got := q.State("bay-1"); got != nil {
				t.Fatalf("state before any SetState: %q", got)
			}
			steps := []struct {
				set  map[string]string
				want map[string]string
			}{
				{map[string]string{"bay-1": "baseline-1", "bay-2": "b2"}, map[string]string{"bay-1": "baseline-1", "bay-2": "b2"}},
				{map[string]string{"bay-1": "baseline-2"}, map[string]string{"bay-1": "baseline-2", "bay-2": "b2"}},
				{map[string]string{"bay-2": ""}, map[string]string{"bay-1": "baseline-2", "bay-2": ""}},
			}
			for i, s := range steps {
				for k, v := range s.set {
					if err := q.SetState(k, []byte(v)); err != nil {
						t.Fatal(err)
					}
				}
				if i == 1 { // rides with an append's commit
					if _, err := q.Append(context.Background(), []Record{{Key: "air", Data: []byte("x")}}); err != nil {
						t.Fatal(err)
					}
				}
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
				q = openState(t, c.path)
				for k, v := range s.want {
					if got := q.State(k); !bytes.Equal(got, []byte(v)) {
						t.Errorf("step %d: after reopen %s = %q, want %q", i, k, got, v)
					}
				}
			}
			if err := q.SetState(strings.Repeat("k", MaxStateKey+1), nil); err == nil {
				t.Error("an over-long key was accepted")
			}
			if err := q.SetState("big", make([]byte, MaxStateValue+1)); err == nil {
				t.Error("an over-long value was accepted")
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			if in, err := Inspect(c.path); err != nil || in.Damaged != "" || in.NextStart != "" {
				t.Errorf("Inspect of a file with state: %+v, %v", in, err)
			}
		})
	}
}

func openState(t *testing.T, path string) *Queue {
	t.Helper()
	q, err := Open(path, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return q
}
