package buffer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fixtureManifest is what testdata/genv1 recorded about the file it wrote.
type fixtureManifest struct {
	Commit       string            `json:"commit"`
	Epoch        uint64            `json:"epoch"`
	NextSeq      uint64            `json:"next_seq"`
	Dropped      map[string]uint64 `json:"dropped"`
	DroppedTotal uint64            `json:"dropped_total"`
	Entries      []struct {
		Seq      uint64 `json:"seq"`
		Key      string `json:"key"`
		Priority uint8  `json:"priority"`
		Index    int    `json:"index"`
		Size     int    `json:"size"`
		BootID   uint32 `json:"boot_id"` // from v4 on: the boot stamp, if any
		BootMs   int64  `json:"boot_ms"`
	} `json:"entries"`
}

// unpackFixture writes testdata/<name>.db.gz, uncompressed, into a fresh
// directory and returns its path and manifest.
func unpackFixture(t testing.TB, name string) (string, fixtureManifest) {
	t.Helper()
	var m fixtureManifest
	js, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	f, err := os.Open(filepath.Join("testdata", name+".db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s.db.gz: %v", name, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s.db.gz: %v", name, err)
	}
	path := filepath.Join(t.TempDir(), "buffer.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, m
}

// TestFormatFixtures opens a file of every earlier format, written by the
// code of its time, and drains every record it holds, byte for byte.
func TestFormatFixtures(t *testing.T) {
	for _, fx := range []struct {
		name    string
		version uint64
	}{
		{"v1-983176d", 1},
		{"v2", 2},
		{"v3", 3},
		{"v4", 4},
		{"v5", 5},
	} {
		name := fx.name
		t.Run(name, func(t *testing.T) {
			path, m := unpackFixture(t, name)
			if in, err := Inspect(path); err != nil || in.Format != fx.version {
				t.Fatalf("Inspect: format %d, %v; want format %d", in.Format, err, fx.version)
			}
			if len(m.Entries) == 0 || m.DroppedTotal == 0 {
				t.Fatalf("manifest of %s lists %d records and %d drops; the fixture should have both", name, len(m.Entries), m.DroppedTotal)
			}
			q := openT(t, path, Options{})
			st := q.Stats()
			if st.Salvage != nil {
				t.Fatalf("fixture was salvaged: %+v", st.Salvage)
			}
			if st.Format != FormatVersion {
				t.Errorf("format after Open = %d, want it upgraded to %d", st.Format, FormatVersion)
			}
			if st.Epoch != m.Epoch || st.NextSeq != m.NextSeq || st.Count != uint64(len(m.Entries)) {
				t.Fatalf("Stats epoch %d next %d count %d, manifest says %d, %d, %d", st.Epoch, st.NextSeq, st.Count, m.Epoch, m.NextSeq, len(m.Entries))
			}
			if st.DroppedTotal != m.DroppedTotal || len(st.Dropped) != len(m.Dropped) {
				t.Fatalf("drop counters %d %v, manifest says %d %v", st.DroppedTotal, st.Dropped, m.DroppedTotal, m.Dropped)
			}
			for k, n := range m.Dropped {
				if st.Dropped[k] != n {
					t.Fatalf("dropped[%q] = %d, manifest says %d", k, st.Dropped[k], n)
				}
			}
			got := readAll(t, q)
			if len(got) != len(m.Entries) {
				t.Fatalf("read %d records, manifest lists %d", len(got), len(m.Entries))
			}
			seqs := make([]uint64, len(got))
			for i, e := range got {
				w := m.Entries[i]
				if e.Seq != w.Seq || e.Key != w.Key || e.Priority != w.Priority || !bytes.Equal(e.Data, payload(w.Key, w.Index, w.Size)) {
					t.Fatalf("record %d: seq %d key %q priority %d data %.30q; want seq %d key %q priority %d record #%d",
						i, e.Seq, e.Key, e.Priority, e.Data, w.Seq, w.Key, w.Priority, w.Index)
				}
				switch {
				case w.BootID == 0 && e.Boot != nil:
					t.Fatalf("record %d (seq %d) read back with boot stamp %+v, manifest has none", i, e.Seq, e.Boot)
				case w.BootID != 0 && (e.Boot == nil || *e.Boot != BootStamp{ID: w.BootID, Since: time.Duration(w.BootMs) * time.Millisecond}):
					t.Fatalf("record %d (seq %d) boot stamp %+v, manifest says id %x, %d ms", i, e.Seq, e.Boot, w.BootID, w.BootMs)
				}
				seqs[i] = e.Seq
			}
			if err := q.Ack(seqs...); err != nil {
				t.Fatal(err)
			}
			closeT(t, q)
			q = openT(t, path, Options{})
			defer closeT(t, q)
			if st := q.Stats(); st.Count != 0 || len(readAll(t, q)) != 0 {
				t.Fatalf("after draining every record: count %d", st.Count)
			}
			if n := appendT(t, q, Record{Key: "after", Data: []byte("x")}); n < m.NextSeq {
				t.Fatalf("new record got seq %d, below the fixture's next seq %d", n, m.NextSeq)
			}
		})
	}
}

// TestFormatAbsentIsVersion1: a file whose bookkeeping has no format key
// is read as version 1 and upgraded.
func TestFormatAbsentIsVersion1(t *testing.T) {
	path, m := unpackFixture(t, "v1-983176d")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyFormat) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if in, err := Inspect(path); err != nil || in.Format != 1 {
		t.Fatalf("Inspect: format %d, %v; want 1", in.Format, err)
	}
	q := openT(t, path, Options{})
	defer closeT(t, q)
	if st := q.Stats(); st.Salvage != nil || st.Format != FormatVersion || len(readAll(t, q)) != len(m.Entries) {
		t.Fatalf("Stats %+v; want format %d and all %d records", st, FormatVersion, len(m.Entries))
	}
}
