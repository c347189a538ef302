package buffer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FuzzRecord: encode→decode round-trips, and any one changed byte is
// caught by the checksum.
func FuzzRecord(f *testing.F) {
	f.Add(uint8(0), int64(1_735_689_600_123), "air-1", []byte(`[{"bn":"gw-0042/air-1/","n":"temperature","u":"Cel","v":21.5}]`), uint16(3))
	f.Add(uint8(1), int64(-5), "", []byte{}, uint16(0))
	f.Add(uint8(255), int64(1<<62), "bay-17", []byte{0xff, 0x00}, uint16(999))
	f.Fuzz(func(t *testing.T, prio uint8, ms int64, key string, data []byte, flip uint16) {
		if len(key) > maxKeyLen {
			return
		}
		tm := time.UnixMilli(ms)
		v := encodeRecord(nil, prio, tm, key, data, nil)
		if len(v) != encodedLen(key, data, tm, nil) {
			t.Fatalf("encoded %d bytes, encodedLen says %d", len(v), encodedLen(key, data, tm, nil))
		}
		r, err := decodeRecord(v)
		if err != nil {
			t.Fatalf("decode of a fresh encoding: %v", err)
		}
		wantMs := min(max(ms, 0), maxMillis)
		if r.class != prio || string(r.key) != key || !bytes.Equal(r.data, data) || r.time.UnixMilli() != wantMs {
			t.Fatalf("round trip: got {%d %q %q %d}, want {%d %q %q %d}", r.class, r.key, r.data, r.time.UnixMilli(), prio, key, data, wantMs)
		}
		bad := bytes.Clone(v)
		bad[int(flip)%len(bad)] ^= 1 << (flip % 8)
		if _, err := decodeRecord(bad); err == nil {
			t.Fatalf("a flipped bit at byte %d went unnoticed", int(flip)%len(bad))
		}
	})
}

// FuzzDecodeRecord: arbitrary bytes never panic and never yield slices
// outside the input.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(nil, 1, time.Now(), "bay-1", []byte("occupied"), &BootStamp{ID: 7, Since: time.Minute}))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 20))
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decodeRecord(v)
		if err != nil {
			return
		}
		if len(r.key) > maxKeyLen || len(r.key)+len(r.data) > len(v) {
			t.Fatalf("decoded key %d + data %d bytes from %d", len(r.key), len(r.data), len(v))
		}
	})
}

// FuzzOpen: whatever bytes lie at the buffer's path, Open neither panics
// nor crashes; it yields a working queue, and any salvage keeps the
// original bytes.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	q, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		recs := []Record{{Key: "air-1", Data: payload("air-1", i, 141)}, {Key: "bay-1", Priority: 1, Data: []byte("1")}}
		if _, err := q.Append(context.Background(), recs); err != nil {
			f.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		f.Fatal(err)
	}
	sound, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	page := os.Getpagesize()
	f.Add(sound)
	f.Add(sound[:len(sound)/2])
	f.Add(append(make([]byte, page), sound[page:]...))
	f.Add(sound[:2*page])
	f.Add([]byte{})
	f.Add([]byte("not a database"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "buffer.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := Open(path, Options{LockTimeout: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if errors.Is(err, errNotQueue) {
			return // a sound bbolt file of something else: refused, untouched
		}
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer q.Close()
		if r := q.Stats().Salvage; r != nil {
			kept, err := os.ReadFile(r.MovedTo)
			if err != nil || !bytes.Equal(kept, data) {
				t.Fatalf("salvage did not keep the original bytes at %s (err %v)", r.MovedTo, err)
			}
		}
		if _, err := q.ReadAfter(0, 1000, 0); err != nil {
			t.Fatalf("ReadAfter: %v", err)
		}
		first, err := q.Append(context.Background(), []Record{{Key: "k", Data: []byte("v")}})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		es, err := q.ReadAfter(first-1, 1, 0)
		if err != nil || len(es) != 1 || string(es[0].Data) != "v" {
			t.Fatalf("the appended record does not read back: %v %v", es, err)
		}
	})
}

// FuzzCheckFile explores what checkFile lets through: whatever it accepts
// must open in bbolt (write mode, our options) without crashing the
// process, and a full bbolt consistency check must agree; whatever it
// rejects must scan for salvage without panicking. Unlike FuzzOpen it
// touches the disk only for accepted inputs, so it runs fast.
func FuzzCheckFile(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	q, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		recs := []Record{{Key: "air-1", Data: payload("air-1", i, 141)}, {Key: "bay-1", Priority: 1, Data: []byte("1")}}
		if _, err := q.Append(context.Background(), recs); err != nil {
			f.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		f.Fatal(err)
	}
	sound, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sound)
	f.Add(sound[:len(sound)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkFile(bytes.NewReader(data), int64(len(data))); err != nil {
			for _, ps := range []int{1024, 4096} {
				gatherFacts(bytes.NewReader(data), int64(len(data)), ps)
			}
			return
		}
		path := filepath.Join(t.TempDir(), "b.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		qq := &Queue{opts: Options{MaxBytes: defaultMaxBytes}}
		qq.size(4096)
		db, err := openLocked(path, mustOpen(t, path), qq.boltOptions(time.Second))
		if err != nil {
			t.Fatalf("bbolt refused a file checkFile accepted: %v", err)
		}
		defer db.Close()
		_ = db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				t.Fatalf("bbolt's check disagrees with checkFile: %v", err)
			}
			return nil
		})
	})
}

func mustOpen(t *testing.T, path string) *os.File {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
