// Command genv5 wrote buffer/testdata/v5.db.gz and its manifest v5.json: a
// real buffer file of format version 5, the first with per-output progress
// (two outputs, "mqtt" and "sentilo"). Run it from the commit that
// introduced format 5 (or any later one still writing version 5):
//
//	go run ./buffer/testdata/genv5 -out /tmp/v5out
//	gzip -9n < /tmp/v5out/buffer.db > buffer/testdata/v5.db.gz
//	cp /tmp/v5out/manifest.json buffer/testdata/v5.json
//
// 40 large "filler" records push the 1 MiB bound while neither output has
// them (drops counted per output); then 300 records of three classes from
// seven keys: MQTT acknowledges all but the last 40, Sentilo every record
// but those of "bay-2" (a held sensor) and the last 20; every fifth record
// both have, so it is gone.
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
	"slices"

	"github.com/cityedge/cityedge/buffer"
)

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
	Commit       string              `json:"commit"`
	Epoch        uint64              `json:"epoch"`
	NextSeq      uint64              `json:"next_seq"`
	Dropped      map[string]uint64   `json:"dropped"`
	DroppedTotal uint64              `json:"dropped_total"`
	Entries      []entry             `json:"entries"`
	Outputs      map[string][]uint64 `json:"outputs"` // per output, the records it has still to get
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
	outputs := []string{"mqtt", "sentilo"}
	q, err := buffer.Open(path, buffer.Options{MaxBytes: 1 << 20, Outputs: outputs})
	if err != nil {
		log.Fatal(err)
	}
	index := map[uint64]entry{}
	for i := range 40 {
		seq, err := q.Append(ctx, []buffer.Record{{Key: "filler", Data: payload("filler", i, 24<<10)}})
		if err != nil {
			log.Fatal(err)
		}
		index[seq] = entry{Seq: seq, Key: "filler", Index: i, Size: 24 << 10}
	}
	keys := []struct {
		key  string
		prio uint8
	}{{"air-1", 0}, {"noise-1", 0}, {"pm-1", 0}, {"bay-1", 1}, {"bay-2", 1}, {"zone-a", 3}, {"cityedge", 2}}
	var mq, se []uint64
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
		if i < 260 || i%5 == 0 {
			mq = append(mq, seq)
		}
		if (k.key != "bay-2" && i < 280) || i%5 == 0 {
			se = append(se, seq)
		}
	}
	for name, seqs := range map[string][]uint64{"mqtt": mq, "sentilo": se} {
		o, err := q.Output(name)
		if err != nil {
			log.Fatal(err)
		}
		if err := o.Ack(seqs...); err != nil {
			log.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		log.Fatal(err)
	}

	q, err = buffer.Open(path, buffer.Options{MaxBytes: 1 << 20, Outputs: outputs})
	if err != nil {
		log.Fatal(err)
	}
	st := q.Stats()
	m := manifest{Commit: "format 5", Epoch: st.Epoch, NextSeq: st.NextSeq, Dropped: st.Dropped, DroppedTotal: st.DroppedTotal,
		Outputs: map[string][]uint64{}}
	read := func(r func(after uint64) ([]buffer.Entry, error)) (seqs []uint64) {
		var after uint64
		for {
			es, err := r(after)
			if err != nil {
				log.Fatal(err)
			}
			if len(es) == 0 {
				return seqs
			}
			for _, e := range es {
				seqs = append(seqs, e.Seq)
				after = e.Seq
			}
		}
	}
	for _, s := range read(func(a uint64) ([]buffer.Entry, error) { return q.ReadAfter(a, 100, 0) }) {
		m.Entries = append(m.Entries, index[s])
	}
	for _, name := range outputs {
		o, _ := q.Output(name)
		m.Outputs[name] = read(func(a uint64) ([]buffer.Entry, error) { return o.ReadAfter(a, 100, 0) })
		if len(m.Outputs[name]) == 0 || len(m.Outputs[name]) == len(m.Entries) || !slices.IsSorted(m.Outputs[name]) {
			log.Fatalf("output %s has %d of %d records to get", name, len(m.Outputs[name]), len(m.Entries))
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
	fmt.Printf("%d records, mqtt %d, sentilo %d, dropped %v\n", len(m.Entries), len(m.Outputs["mqtt"]), len(m.Outputs["sentilo"]), m.Dropped)
}
