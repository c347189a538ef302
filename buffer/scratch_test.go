package buffer

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
)

// TestReadInto: ReadInto returns what ReadAfter returns, for the queue and
// for one of several outputs, and a read into the same Scratch that reuses
// its memory never changes what the read before it returned into another.
func TestReadInto(t *testing.T) {
	cases := []struct {
		name    string
		outputs []string
	}{
		{"queue", nil},
		{"output", []string{"mqtt", "sentilo"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{Outputs: c.outputs})
			defer closeT(t, q)
			var seqs []uint64
			for i := range 50 {
				seqs = append(seqs, appendT(t, q, Record{Key: fmt.Sprint("s", i%3), Data: payload("s", i, 20+i)}))
			}
			read, readInto := q.ReadAfter, q.ReadInto
			if c.outputs != nil {
				o := outputT(t, q, "mqtt")
				if err := o.Ack(seqs[3:5]...); err != nil {
					t.Fatal(err)
				}
				read, readInto = o.ReadAfter, o.ReadInto
			}
			var s, other Scratch
			for after := uint64(0); ; {
				want, err := read(after, 7, 400)
				if err != nil {
					t.Fatal(err)
				}
				got, err := readInto(&s, after, 7, 400)
				if err != nil {
					t.Fatal(err)
				}
				if len(want) == 0 && len(got) == 0 {
					break
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("after %d: ReadInto %v, ReadAfter %v", after, got, want)
				}
				// A read into another Scratch leaves got as it was.
				if _, err := readInto(&other, 0, 50, 0); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("after %d: another Scratch's read changed the entries", after)
				}
				after = got[len(got)-1].Seq
			}
		})
	}
}
