package agent

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/cityedge/cityedge/uplink"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/jonboulle/clockwork"
)

// Queue is what the forwarder needs of the buffer.
type Queue interface {
	ReadAfter(after uint64, max, maxBytes int) ([]buffer.Entry, error)
	Ack(seqs ...uint64) error
	Notify() <-chan struct{}
	Stats() buffer.Stats
}

// forwarder is the uplink's Source: it turns buffered readings into SenML
// packs and deletes them from the buffer once the broker acknowledged them.
//
// Each connection splits the buffer at the sequence number current when it
// started: readings taken since then are live and go first, in seq order,
// each batch as soon as it is full, has waited batch_wait, or holds an
// occupancy change; the backlog before the split is back-filled, in seq
// order, whenever no live batch is due. So after a long outage a parking
// change still arrives in about a second while hours of environmental
// readings drain behind it. With uplink.drain_order = "oldest-first" there is
// no split: everything goes strictly in seq order.
type forwarder struct {
	q         Queue
	agentID   string
	batchMax  int
	batchWait time.Duration
	limit     *rateLimit // nil: unlimited
	fifo      bool       // uplink.drain_order = "oldest-first": no live split
	clk       *clockRule // nil: readings leave with the time they have (clock.go)
	clock     clockwork.Clock
	log       *slog.Logger

	mu         sync.Mutex
	backBegan  time.Time // when this session's back-fill began; zero without a backlog
	backLogged bool
	liveStart  uint64 // readings after this seq are live in this session
	liveCursor uint64 // highest live seq handed out
	backCursor uint64 // highest backlog seq handed out
	urgent     chan struct{}

	// Next's own state (Next runs on one goroutine, never with Rewind).
	// liveQuiet: no live read is needed before this time unless the queue
	// notifies an append or a batch is hurried; it spares a bbolt read per
	// batch while a backlog drains behind an empty or waiting live part.
	liveQuiet time.Time
	// hurried: an occupancy change was buffered; the next live batch goes
	// without waiting for batch_wait. A state, not a re-armed channel: a
	// request whose reading already went out must not make Next spin.
	hurried bool
	// The clock rule (clock.go): decisions for the entries being emitted,
	// and, per part, the first reading held for a trusted clock (0: none)
	// and when to look at it again.
	decs               []clocksync.Decision
	heldLive, heldBack atomic.Uint64
	liveHeld, backHeld time.Time
	items              []senml.Item // packing scratch
	// Read memory, one per part: live and back-fill entries are never
	// in use at the same time, but keeping them apart costs nothing.
	liveRead, backRead buffer.Scratch
	payloads           sync.Pool // *[]byte: payload buffers back from Acked
	seqs               sync.Pool // *[]uint64: Batch.Seqs back from Acked
}

var _ uplink.Source = (*forwarder)(nil)

// scratchReader is what a Queue offers that can read into memory reused
// from one read to the next (buffer.Queue's ReadInto).
type scratchReader interface {
	ReadInto(s *buffer.Scratch, after uint64, max, maxBytes int) ([]buffer.Entry, error)
}

// read is the queue's ReadAfter, in s when the queue can reuse memory:
// the entries are used up (packed) before the part's next read.
func (f *forwarder) read(s *buffer.Scratch, after uint64) ([]buffer.Entry, error) {
	if r, ok := f.q.(scratchReader); ok {
		return r.ReadInto(s, after, f.batchMax, uplink.MaxPayload)
	}
	return f.q.ReadAfter(after, f.batchMax, uplink.MaxPayload)
}

func newForwarder(q Queue, agentID string, batchMax int, batchWait time.Duration, clock clockwork.Clock, log *slog.Logger) *forwarder {
	return &forwarder{q: q, agentID: agentID, batchMax: batchMax, batchWait: batchWait, clock: clock, log: log,
		urgent: make(chan struct{}, 1)}
}

// NewSource returns the uplink.Source the agent runs over q: live readings
// first, the backlog behind them, batches of at most batchMax readings that
// wait at most batchWait to fill up.
func NewSource(q Queue, agentID string, batchMax int, batchWait time.Duration, log *slog.Logger) uplink.Source {
	return newForwarder(q, agentID, batchMax, batchWait, clockwork.NewRealClock(), log)
}

// hurry makes the next live batch go out without waiting for batch_wait; the
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
	var next uint64
	st := f.q.Stats()
	if !f.fifo {
		next = st.NextSeq
	}
	f.mu.Lock()
	f.liveStart = max(next, 1) - 1
	f.liveCursor = f.liveStart
	f.backCursor = 0
	f.backBegan, f.backLogged = time.Time{}, false
	f.liveQuiet = time.Time{}
	f.liveHeld, f.backHeld = time.Time{}, time.Time{}
	if st.Count > 0 {
		f.backBegan = f.clock.Now()
	}
	f.mu.Unlock()
	if st.Count > 0 {
		f.log.Info("sending the backlog", "readings", st.Count, "oldest_seq", st.OldestSeq, "live_after_seq", next-1, "order", map[bool]string{true: "oldest-first", false: "live-first"}[f.fifo])
	}
}

// Next implements uplink.Source.
func (f *forwarder) Next(ctx context.Context) (uplink.Batch, error) {
	var timer clockwork.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		liveCursor, backCursor, liveStart := f.liveCursor, f.backCursor, f.liveStart
		f.mu.Unlock()

		select {
		case <-f.urgent:
			f.hurried = true
		default:
		}
		select {
		case <-f.q.Notify():
			f.liveQuiet = time.Time{}
		default:
		}
		wait := time.Duration(-1)
		now := f.clock.Now()
		if (f.hurried || !now.Before(f.liveQuiet)) && !now.Before(f.liveHeld) {
			live, err := f.read(&f.liveRead, liveCursor)
			if err != nil {
				return uplink.Batch{}, err
			}
			// Nothing live: the next append notifies (and a second later
			// this looks again all the same).
			f.liveQuiet = now.Add(time.Second)
			live, held := f.ready(live, &f.heldLive, &f.liveHeld, now)
			if len(live) > 0 {
				wait = 0
				if len(live) < f.batchMax && !f.hurried && !held {
					wait = f.batchWait - now.Sub(live[0].Time)
				}
				if wait <= 0 {
					f.liveQuiet, f.hurried = time.Time{}, false // there may be more
					if b, ok, err := f.emit(ctx, live, &f.liveCursor); ok || err != nil {
						return b, err
					}
					continue
				}
				// A partial batch: nothing changes before it is due unless
				// more is appended (notify) or it is hurried.
				f.liveQuiet = now.Add(wait)
			}
			// With nothing live, a hurry request stays for the reading on its
			// way (held in memory while the disk refuses writes, say); the
			// append that stores it notifies.
		} else {
			wait = f.clock.Until(later(f.liveQuiet, f.liveHeld))
		}
		backWaits := backCursor < liveStart && now.Before(f.backHeld)
		if backCursor < liveStart && !backWaits {
			back, err := f.read(&f.backRead, backCursor)
			if err != nil {
				return uplink.Batch{}, err
			}
			n := 0
			for n < len(back) && back[n].Seq <= liveStart {
				n++
			}
			ready, held := f.ready(back[:n], &f.heldBack, &f.backHeld, now)
			switch {
			case held && len(ready) == 0:
				// The backlog waits for the clock; so does what is behind it.
				backWaits = true
			case n == 0:
				f.mu.Lock()
				f.backCursor = max(f.backCursor, liveStart)
				f.mu.Unlock()
				f.backlogSent()
				continue
			default:
				b, ok, err := f.emit(ctx, ready, &f.backCursor)
				if !held && (ready[len(ready)-1].Seq >= liveStart || n < len(back)) {
					f.backlogSent()
				}
				if ok || err != nil {
					return b, err
				}
				continue
			}
		}
		if backWaits {
			wait = minWait(wait, f.clock.Until(f.backHeld))
		}
		if !f.liveHeld.IsZero() {
			wait = minWait(wait, f.clock.Until(later(f.liveQuiet, f.liveHeld)))
		}
		if timer == nil {
			timer = f.clock.NewTimer(time.Hour)
		}
		if wait < 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return uplink.Batch{}, ctx.Err()
		case <-f.q.Notify():
			f.liveQuiet = time.Time{}
		case <-f.urgent:
			f.hurried = true
		case <-timer.Chan():
		}
	}
}

// ready asks the clock rule about entries, in order, and returns those
// before the first one held for a trusted clock, with their decisions in
// f.decs. A held entry is looked at again clockCheckEvery later (until);
// first keeps its number for the status (0: nothing held).
func (f *forwarder) ready(es []buffer.Entry, first *atomic.Uint64, until *time.Time, now time.Time) ([]buffer.Entry, bool) {
	f.decs = f.decs[:0]
	if f.clk == nil {
		return es, false
	}
	for i := range es {
		d := f.clk.release(&es[i])
		if d.Hold && !d.Never {
			first.Store(es[i].Seq)
			*until = now.Add(clockCheckEvery)
			return es[:i], true
		}
		f.decs = append(f.decs, d)
	}
	first.Store(0)
	*until = time.Time{}
	return es, false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// minWait is the shorter of two waits; a negative one means none is set.
func minWait(a, b time.Duration) time.Duration {
	if a < 0 {
		return max(b, 0)
	}
	return max(min(a, b), 0)
}

// backlogSent logs, once per session, that the back-fill is all sent.
func (f *forwarder) backlogSent() {
	f.mu.Lock()
	began, logged := f.backBegan, f.backLogged
	f.backLogged = true
	f.mu.Unlock()
	if !logged && !began.IsZero() {
		f.log.Info("backlog sent; its acknowledgements follow", "took", f.clock.Since(began).Round(time.Millisecond))
	}
}

// emit packs entries, advances cursor past them and applies the rate limit.
// ok is false when every entry was damaged and nothing is left to send.
func (f *forwarder) emit(ctx context.Context, entries []buffer.Entry, cursor *uint64) (uplink.Batch, bool, error) {
	items := f.items[:0]
	size := 64
	var never []uint64
	decided := len(f.decs) == len(entries)
	for i, e := range entries {
		it := senml.Item{Seq: e.Seq, Data: e.Data}
		if decided {
			d := f.decs[i]
			if d.Never {
				never = append(never, e.Seq)
				continue
			}
			if d.Mark != clocksync.MarkNone {
				it.Time, it.Mark = d.Time, d.Mark
			}
		}
		items = append(items, it)
		size += 3*len(e.Data) + 16 // JSON takes about 2.5 times the stored form
	}
	if len(never) > 0 {
		// DECISIONS 3: a time before the build date never leaves, and
		// no trusted clock of its boot can correct it any more.
		f.log.Warn("readings of an earlier boot carry a time before this build and their boot never learned the true time; deleting them", "readings", len(never), "first_seq", never[0])
		if err := f.q.Ack(never...); err != nil {
			f.log.Error("delete readings without a true time", "err", err)
		}
		f.clk.discard(len(never))
	}
	// A payload buffer comes back from Acked once the broker has the batch
	// (see there); a drain would otherwise allocate one per message.
	var buf []byte
	if p, _ := f.payloads.Get().(*[]byte); p != nil {
		buf = *p
	}
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	payload, bad := senml.Pack(buf[:0], f.agentID, items)
	clear(items) // the scratch must not keep the entries alive
	f.items = items[:0]
	var seqs []uint64
	if p, _ := f.seqs.Get().(*[]uint64); p != nil {
		seqs = (*p)[:0]
	}
	for i, b, nv := 0, 0, 0; i < len(entries); i++ {
		if b < len(bad) && bad[b] == entries[i].Seq {
			b++
			continue
		}
		if nv < len(never) && never[nv] == entries[i].Seq {
			nv++
			continue
		}
		seqs = append(seqs, entries[i].Seq)
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
	*cursor = max(*cursor, entries[len(entries)-1].Seq)
	f.mu.Unlock()
	if len(seqs) == 0 {
		return uplink.Batch{}, false, nil
	}
	if f.limit != nil {
		if err := f.limit.wait(ctx, len(seqs), len(payload)); err != nil {
			return uplink.Batch{}, false, err
		}
	}
	return uplink.Batch{Payload: payload, Seqs: seqs}, true, nil
}

// Acked implements uplink.Source: the broker has the batch, so it leaves the
// buffer.
func (f *forwarder) Acked(b uplink.Batch) error {
	err := f.q.Ack(b.Seqs...)
	if f.clk != nil && err == nil {
		f.clk.acked(b.Seqs) // the held count (heldcount.go)
	}
	// Past the PUBACK nothing reads the payload any more: uplink calls
	// Acked once per batch and drops it, and paho removed the packet from
	// its store when the PUBACK came. Its buffer packs a later batch.
	if cap(b.Payload) > 0 {
		p := b.Payload[:0]
		f.payloads.Put(&p)
	}
	if cap(b.Seqs) > 0 {
		s := b.Seqs[:0]
		f.seqs.Put(&s)
	}
	return err
}
