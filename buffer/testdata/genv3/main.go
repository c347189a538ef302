// Command genv3 wrote buffer/testdata/v3.db.gz and its manifest v3.json: a
// real buffer file of format version 3, the first whose sequence numbers
// are reserved ahead ("reserved") and whose records may be acknowledged
// before their commit and so never written. It is genv2 with, in the
// middle, ten readings acknowledged before their commit (gaps in the file's
// numbers); run it from the commit that introduced format 3 (or any later
// one still writing version 3):
//
//	go run ./buffer/testdata/genv3 -out /tmp/v3out
//	gzip -9n < /tmp/v3out/buffer.db > buffer/testdata/v3.db.gz
//	cp /tmp/v3out/manifest.json buffer/testdata/v3.json
//
// The file holds records of the three classes from eight keys, some acked,
// one unsent report, and drop counters from 40 large "filler" records that
// pushed the 1 MiB bound.
//
// Like every genvN it is a frozen, self-contained copy rather than code shared
// with its siblings: each must still build against the buffer API of the
// commit that introduced its format, so a fixture can be written again.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/cityedge/cityedge/buffer"
)

// payload is the deterministic body of record i of key: the fixture test
// rebuilds it to check every byte that comes back.
func payload(key string, i, n int) []byte {
	b := []byte(fmt.Sprintf("%s#%08d|", key, i))
	for len(b) < n {
		b = append(b, byte('a'+(len(b)+i)%26))
	}
	return b[:n]
}

type entry struct {
	Seq      uint64 `json:"seq"`
	Key      string `json:"key"`
	Priority uint8  `json:"priority"`
	Index    int    `json:"index"`
	Size     int    `json:"size"`
}

type manifest struct {
	Commit       string            `json:"commit"`
	Epoch        uint64            `json:"epoch"`
	NextSeq      uint64            `json:"next_seq"`
	Dropped      map[string]uint64 `json:"dropped"`
	DroppedTotal uint64            `json:"dropped_total"`
	Entries      []entry           `json:"entries"`
}

func main() {
	out := flag.String("out", "", "directory to write buffer.db and manifest.json into")
	flag.Parse()
	if *out == "" {
		log.Fatal("-out is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(*out, "buffer.db")
	ctx := context.Background()
	q, err := buffer.Open(path, buffer.Options{MaxBytes: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	// 40 × 24 KiB of filler exceed the 1 MiB bound: the oldest are dropped.
	var filler []uint64
	for i := range 40 {
		seq, err := q.Append(ctx, []buffer.Record{{Key: "filler", Priority: 0, Data: payload("filler", i, 24<<10)}})
		if err != nil {
			log.Fatal(err)
		}
		filler = append(filler, seq)
	}
	if err := q.Ack(filler...); err != nil { // the dropped ones are ignored
		log.Fatal(err)
	}
	index := map[uint64]entry{}
	keys := []struct {
		key  string
		prio uint8
	}{
		{"air-1", 0}, {"air-2", 0}, {"noise-1", 0}, {"noise-2", 0}, {"pm-1", 0},
		{"bay-1", 1}, {"bay-2", 1}, {"cityedge", 2},
	}
	var acked []uint64
	for i := range 300 {
		k := keys[i%len(keys)]
		size := 20 + (i*37)%180
		rec := buffer.Record{Key: k.key, Priority: k.prio, Data: payload(k.key, i, size)}
		var seq uint64
		if k.prio == buffer.ClassReport {
			seq, err = q.PutReport(ctx, rec)
		} else {
			seq, err = q.Append(ctx, []buffer.Record{rec})
		}
		if err != nil {
			log.Fatal(err)
		}
		index[seq] = entry{Seq: seq, Key: k.key, Priority: k.prio, Index: i, Size: size}
		if i%5 == 2 && i < 290 {
			acked = append(acked, seq)
		}
	}
	if err := q.Ack(acked...); err != nil {
		log.Fatal(err)
	}
	if err := q.Close(); err != nil { // commits the acks
		log.Fatal(err)
	}

	// Ten readings acknowledged before their commit: never written.
	q, err = buffer.Open(path, buffer.Options{MaxBytes: 1 << 20, CommitInterval: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	for i := range 10 {
		done := make(chan error, 1)
		go func() {
			_, err := q.Append(ctx, []buffer.Record{{Key: "air-9", Data: payload("air-9", i, 50)}})
			done <- err
		}()
		var es []buffer.Entry
		for len(es) == 0 {
			if es, err = q.ReadAfter(0, 1000, 0); err != nil {
				log.Fatal(err)
			}
			for len(es) > 0 && es[0].Key != "air-9" {
				es = es[1:]
			}
			time.Sleep(time.Millisecond)
		}
		if err := q.Ack(es[0].Seq); err != nil {
			log.Fatal(err)
		}
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		log.Fatal(err)
	}

	// Read it back through the same code to write the manifest.
	q, err = buffer.Open(path, buffer.Options{MaxBytes: 1 << 20})
	if err != nil {
		log.Fatal(err)
	}
	st := q.Stats()
	m := manifest{Commit: "format 3", Epoch: st.Epoch, NextSeq: st.NextSeq, Dropped: st.Dropped, DroppedTotal: st.DroppedTotal}
	var after uint64
	for {
		es, err := q.ReadAfter(after, 100, 0)
		if err != nil {
			log.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			m.Entries = append(m.Entries, index[e.Seq])
			after = e.Seq
		}
	}
	if err := q.Close(); err != nil {
		log.Fatal(err)
	}
	js, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "manifest.json"), append(js, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d records, dropped %v\n", len(m.Entries), m.Dropped)
}
