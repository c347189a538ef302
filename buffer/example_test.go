package buffer_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/cityedge/cityedge/buffer"
)

// The sampler appends; the uplink reads a batch, publishes it, and acks it
// after the broker's PUBACK.
func Example() {
	dir, _ := os.MkdirTemp("", "buffer-example")
	defer os.RemoveAll(dir)
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{CommitInterval: 250 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	first, err := q.Append(context.Background(), []buffer.Record{
		{Key: "air-1", Priority: 0, Data: []byte(`{"n":"temperature","u":"Cel","v":21.5}`)},
		{Key: "bay-17", Priority: 1, Data: []byte(`{"n":"occupied","vb":true}`)},
	})
	if err != nil {
		log.Fatal(err) // not durable: the reading is held in memory or lost
	}
	batch, _ := q.ReadAfter(first-1, 100, 64<<10)
	for _, e := range batch {
		fmt.Printf("+%d %s %s\n", e.Seq-first, e.Key, e.Data)
	}
	// ... publish, wait for PUBACK ...
	_ = q.Ack(batch[0].Seq, batch[1].Seq)
	rest, _ := q.ReadAfter(0, 100, 0)
	fmt.Println("left:", len(rest))
	// Output:
	// +0 air-1 {"n":"temperature","u":"Cel","v":21.5}
	// +1 bay-17 {"n":"occupied","vb":true}
	// left: 0
}
