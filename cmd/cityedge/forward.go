package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
)

// queue is what the forwarder needs of the buffer.
type queue interface {
	ReadAfter(after uint64, max, maxBytes int) ([]buffer.Entry, error)
	Ack(seqs ...uint64) error
	Notify() <-chan struct{}
}

// maxPackBytes bounds one message: brokers commonly cap packets well above
// this, and a bounded message keeps memory flat while draining a backlog.
const maxPackBytes = 256 << 10

// forwarder is the uplink's Source: it turns buffered readings into SenML
// packs, in sequence order, and deletes them from the buffer once the broker
// acknowledged them.
type forwarder struct {
	q         queue
	agentID   string
	batchMax  int
	batchWait time.Duration
	log       *slog.Logger

	mu     sync.Mutex
	cursor uint64 // highest seq handed out in this session
	urgent chan struct{}
}

var _ uplink.Source = (*forwarder)(nil)

func newForwarder(q queue, agentID string, batchMax int, batchWait time.Duration, log *slog.Logger) *forwarder {
	return &forwarder{q: q, agentID: agentID, batchMax: batchMax, batchWait: batchWait, log: log,
		urgent: make(chan struct{}, 1)}
}

// hurry makes the next batch go out without waiting for batch_wait; the
// sampler calls it after buffering an occupancy change.
func (f *forwarder) hurry() {
	select {
	case f.urgent <- struct{}{}:
	default:
	}
}

// Rewind implements uplink.Source: a new connection re-sends everything that
// is still in the buffer, i.e. not acknowledged.
func (f *forwarder) Rewind() {
	f.mu.Lock()
	f.cursor = 0
	f.mu.Unlock()
}

// Next implements uplink.Source. A batch goes out when it is full, when its
// oldest reading has waited batch_wait, or at once after an occupancy change.
func (f *forwarder) Next(ctx context.Context) (uplink.Batch, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		after := f.cursor
		f.mu.Unlock()
		entries, err := f.q.ReadAfter(after, f.batchMax, maxPackBytes)
		if err != nil {
			return uplink.Batch{}, err
		}
		hurried := false
		select {
		case <-f.urgent:
			hurried = true
		default:
		}
		var wait time.Duration
		if len(entries) > 0 && len(entries) < f.batchMax && !hurried {
			wait = f.batchWait - time.Since(entries[0].Time)
		}
		if len(entries) > 0 && wait <= 0 {
			return f.pack(entries), nil
		}
		if timer == nil {
			timer = time.NewTimer(time.Hour)
		}
		if wait <= 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return uplink.Batch{}, ctx.Err()
		case <-f.q.Notify():
		case <-f.urgent:
			f.hurry() // keep the request for the read that follows
		case <-timer.C:
		}
	}
}

func (f *forwarder) pack(entries []buffer.Entry) uplink.Batch {
	items := make([]senml.Item, len(entries))
	seqs := make([]uint64, 0, len(entries))
	for i, e := range entries {
		items[i] = senml.Item{Seq: e.Seq, Data: e.Data}
	}
	payload, bad := senml.Pack(nil, f.agentID, items)
	badSet := map[uint64]bool{}
	for _, s := range bad {
		badSet[s] = true
	}
	for _, e := range entries {
		if !badSet[e.Seq] {
			seqs = append(seqs, e.Seq)
		}
	}
	if len(bad) > 0 {
		// An entry that cannot be decoded can never be delivered; keeping it
		// would re-send its neighbours forever. Say which, then let it go.
		f.log.Error("buffered readings are damaged and cannot be sent; deleting them", "seqs", bad)
		if err := f.q.Ack(bad...); err != nil {
			f.log.Error("delete damaged readings", "err", err)
		}
	}
	f.mu.Lock()
	f.cursor = entries[len(entries)-1].Seq
	f.mu.Unlock()
	return uplink.Batch{Payload: payload, Seqs: seqs}
}

// Acked implements uplink.Source: the broker has the batch, so it leaves the
// buffer.
func (f *forwarder) Acked(b uplink.Batch) error {
	return f.q.Ack(b.Seqs...)
}
