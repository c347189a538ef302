package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/jonboulle/clockwork"
)

// handoffBytes bounds the environmental readings the hand-off holds while
// the buffer commits (about 8,000 BME280 readings: 80 s of a hundred sensors
// at 100 ms, far beyond any healthy commit).
const handoffBytes = 1 << 20

// appender is what the hand-off needs of the buffer: a durable append that
// may wait for its group commit, and the drop counters.
type appender interface {
	Append(ctx context.Context, recs []buffer.Record) (uint64, error)
	CountDropped(key string, n uint64)
}

// handoff sits between the samplers and the buffer, so that sampling never
// waits for the disk. A sampler's put returns at once; one goroutine (feed)
// appends everything that arrived meanwhile in one call, which the buffer
// commits as one group (buffer.commit_interval), then takes the next lot.
//
// While a commit runs the hand-off fills. Only a disk that has stalled fills
// it beyond handoffBytes: then the oldest environmental readings in it are
// dropped and counted in the buffer's drop counters (status, the drop
// report), never an occupancy change, and the samplers keep their rhythm.
//
// Durability is the buffer's: a reading is durable when its commit returns
// (logged at Debug as "reading buffered" with its seq). What a power cut can
// lose is what was not yet committed: the readings in the hand-off and in
// the commit under way.
type handoff struct {
	q     appender
	clock clockwork.Clock
	log   *slog.Logger
	max   int
	// committed is called after each append with the records it stored
	// (the forwarder hurries for occupancy changes).
	committed func(recs []buffer.Record, first uint64)

	mu      sync.Mutex
	recs    []buffer.Record
	bytes   int
	spare   []buffer.Record
	closed  bool
	wake    chan struct{}
	dropped uint64 // hand-off drops since start
	logAt   time.Time
	logN    uint64

	busySince atomic.Int64 // UnixNano when the current append began; 0 when idle
}

func newHandoff(q appender, clock clockwork.Clock, log *slog.Logger, maxBytes int) *handoff {
	return &handoff{q: q, clock: clock, log: log, max: maxBytes, wake: make(chan struct{}, 1)}
}

// put queues one record without waiting. When the hand-off is over its bound
// the oldest environmental records go (counted); occupancy changes are never
// dropped here.
func (h *handoff) put(rec buffer.Record) {
	var drops map[string]uint64
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.log.Error("reading after shutdown began; not buffered", "sensor", rec.Key)
		return
	}
	h.recs = append(h.recs, rec)
	h.bytes += len(rec.Data)
	if h.bytes > h.max {
		drops = h.shedLocked()
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
	for k, n := range drops {
		h.q.CountDropped(k, n)
	}
}

// shedLocked drops the oldest environmental records until the hand-off is
// within its bound (or only occupancy changes, zone counts and the drop
// report are left) and returns the drops per sensor.
func (h *handoff) shedLocked() map[string]uint64 {
	drops := map[string]uint64{}
	keep := h.recs[:0]
	var n uint64
	for _, r := range h.recs {
		if h.bytes > h.max && r.Priority == buffer.ClassEnvironmental {
			h.bytes -= len(r.Data)
			drops[r.Key]++
			n++
			continue
		}
		keep = append(keep, r)
	}
	clear(h.recs[len(keep):])
	h.recs = keep
	h.dropped += n
	h.logN += n
	if now := h.clock.Now(); now.Sub(h.logAt) >= 10*time.Second {
		h.log.Warn("disk stalled: hand-off full, dropped the oldest environmental readings (occupancy changes kept)",
			"dropped", h.logN, "dropped_since_start", h.dropped, "held", len(h.recs), "per_sensor", drops)
		h.logAt, h.logN = now, 0
	}
	return drops
}

// take returns everything queued, waiting until there is something; ok is
// false once the hand-off is closed and empty.
func (h *handoff) take() (recs []buffer.Record, ok bool) {
	for {
		h.mu.Lock()
		if len(h.recs) > 0 {
			recs = h.recs
			h.recs, h.spare = h.spare[:0], nil
			h.bytes = 0
			h.mu.Unlock()
			return recs, true
		}
		closed := h.closed
		h.mu.Unlock()
		if closed {
			return nil, false
		}
		<-h.wake
	}
}

// close ends the hand-off: feed appends what is left and returns.
func (h *handoff) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// feed appends to the buffer until the hand-off is closed and drained. It
// is the only caller of Append for readings, so the grouping is the
// buffer's: one append per commit while sampling outpaces the disk.
func (h *handoff) feed() {
	for {
		recs, ok := h.take()
		if !ok {
			return
		}
		h.busySince.Store(h.clock.Now().UnixNano())
		// Shutdown waits for this append: what was sampled is committed.
		first, err := h.q.Append(context.Background(), recs)
		h.busySince.Store(0)
		switch {
		case errors.Is(err, buffer.ErrNotDurable):
			// The disk refuses writes (full?): the buffer holds the readings
			// in its memory ring, reports it and writes them when it can.
		case err != nil:
			// A record the buffer refuses (a driver bug: too large) must not
			// take the others with it: append them one by one.
			h.appendEach(recs)
			err = errors.New("appended one by one")
		default:
			if h.log.Enabled(context.Background(), slog.LevelDebug) {
				for i, r := range recs {
					h.log.Debug("reading buffered", "sensor", r.Key, "seq", first+uint64(i))
				}
			}
		}
		if h.committed != nil && (err == nil || errors.Is(err, buffer.ErrNotDurable)) {
			h.committed(recs, first)
		}
		clear(recs)
		h.mu.Lock()
		if h.spare == nil {
			h.spare = recs[:0]
		}
		h.mu.Unlock()
	}
}

// appendEach appends recs one at a time after a refused group, so that only
// the refused record is lost, with an error naming its sensor.
func (h *handoff) appendEach(recs []buffer.Record) {
	for _, r := range recs {
		seq, err := h.q.Append(context.Background(), []buffer.Record{r})
		switch {
		case errors.Is(err, buffer.ErrNotDurable):
		case err != nil:
			h.log.Error("reading not buffered", "sensor", r.Key, "err", err)
			continue
		default:
			h.log.Debug("reading buffered", "sensor", r.Key, "seq", seq)
		}
		if h.committed != nil {
			h.committed([]buffer.Record{r}, seq)
		}
	}
}
