package buffer

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// readingSize is a realistic SenML record of one reading.
const readingSize = 141

func benchRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: "air-1", Data: payload("air-1", i, readingSize)}
	}
	return recs
}

func reportRate(b *testing.B, readings int) {
	b.ReportMetric(float64(readings)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkAppend100: durable append (commit + fsync) of 100 readings of
// 141 B through the queue's API, one caller.
func BenchmarkAppend100(b *testing.B) {
	q := openT(b, filepath.Join(b.TempDir(), "buffer.db"), Options{})
	defer q.Close()
	recs := benchRecords(100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := q.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*len(recs))
}

// BenchmarkRawBolt100 is the ceiling: one bbolt Update putting the same 100
// payloads under NextSequence keys, with the same options, no bookkeeping.
func BenchmarkRawBolt100(b *testing.B) {
	q := &Queue{opts: Options{MaxBytes: defaultMaxBytes}}
	q.size(4096)
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, q.boltOptions(defaultLockTimeout))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	recs := benchRecords(100)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("d"))
			if err != nil {
				return err
			}
			bk.FillPercent = fillPercent
			for _, r := range recs {
				seq, _ := bk.NextSequence()
				if err := bk.Put(seqKey(seq), r.Data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*len(recs))
}

// BenchmarkAppendGrouped: 200 sensors appending one reading each,
// concurrently, with the agent's 250 ms window: how many readings share
// one fsync.
func BenchmarkAppendGrouped(b *testing.B) {
	q := openT(b, filepath.Join(b.TempDir(), "buffer.db"), Options{CommitInterval: 250 * time.Millisecond})
	defer q.Close()
	const sensors = 200
	before := q.Stats().Commits
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		for s := 0; s < sensors; s++ {
			wg.Add(1)
			go func(s int) {
				defer wg.Done()
				key := fmt.Sprintf("s%03d", s)
				if _, err := q.Append(context.Background(), []Record{{Key: key, Data: payload(key, i, readingSize)}}); err != nil {
					b.Error(err)
				}
			}(s)
		}
		wg.Wait()
	}
	commits := q.Stats().Commits - before
	reportRate(b, b.N*sensors)
	b.ReportMetric(float64(b.N*sensors)/float64(commits), "readings/commit")
}

// BenchmarkReadAck100: the queue's side of draining: read 100, ack them.
func BenchmarkReadAck100(b *testing.B) {
	q := openT(b, filepath.Join(b.TempDir(), "buffer.db"), Options{CommitInterval: 250 * time.Millisecond})
	defer q.Close()
	recs := benchRecords(1000)
	fill := func() { // concurrently: one 250 ms window, few commits
		var wg sync.WaitGroup
		for n := 0; n < 100_000; n += len(recs) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := q.Append(context.Background(), recs); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	fill()
	b.ResetTimer()
	var after uint64
	for i := 0; i < b.N; i++ {
		es, err := q.ReadAfter(after, 100, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(es) < 100 {
			b.StopTimer()
			fill()
			b.StartTimer()
			i--
			continue
		}
		seqs := make([]uint64, len(es))
		for j, e := range es {
			seqs[j] = e.Seq
		}
		if err := q.Ack(seqs...); err != nil {
			b.Fatal(err)
		}
		after = es[len(es)-1].Seq
	}
	if err := q.Close(); err != nil { // includes committing the deletes
		b.Fatal(err)
	}
	reportRate(b, b.N*100)
}

// BenchmarkFileBytesPerReading queues 100,000 readings of 141 B and reports
// the file size per queued reading.
func BenchmarkFileBytesPerReading(b *testing.B) {
	const total = 100_000
	recs := benchRecords(100)
	for i := 0; i < b.N; i++ {
		q := openT(b, filepath.Join(b.TempDir(), "buffer.db"), Options{})
		for n := 0; n < total; n += len(recs) {
			if _, err := q.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		st := q.Stats()
		b.ReportMetric(float64(st.FileBytes)/total, "file-B/reading")
		b.ReportMetric(float64(st.Bytes)/total, "live-B/reading")
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*total)
}
