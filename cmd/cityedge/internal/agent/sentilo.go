package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/clocksync"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/uplink/senml"
	"github.com/cityedge/cityedge/uplink/sentilo"
)

// sentiloClient is what the Sentilo output needs of uplink/sentilo.Client.
type sentiloClient interface {
	Publish(ctx context.Context, rs []sentilo.Reading) []sentilo.Outcome
	Wait(ctx context.Context) error
	Gate() sentilo.Gate
	Held() []sentilo.HeldSensor
	Stats() sentilo.Stats
	Reconnect()
}

// maxSentiloPending bounds the buffered readings the Sentilo output keeps in
// memory for a retry (held sensors), about 200 bytes each. Past it, the
// held ones nothing of which was stored yet are let go from memory (they
// stay in the buffer) and read again from Sentilo's progress when their
// retry is due, so memory stays bounded and other sensors keep flowing.
var maxSentiloPending = 20000

// sentiloOutput is the Sentilo output's forwarder: it reads, through its own
// view of the buffer, what Sentilo does not have yet, in sequence order,
// offers it to the client and acknowledges for Sentilo what Sentilo stored
// (or set aside). Readings of held sensors (404) stay in the buffer and in
// memory and are offered again when the client says (per sensor, 10 s
// doubling to 10 min); they never block other sensors' readings. While the
// client's gate is closed (429, 401/403, errors) nothing is read or sent.
// After a restart it resumes at Sentilo's progress in the buffer: what
// Sentilo had acknowledged is never offered again.
type sentiloOutput struct {
	q         outputQueue
	c         sentiloClient
	ids       map[sentilo.Quantity]string
	batchMax  int
	batchWait time.Duration
	clock     clockwork.Clock
	log       *slog.Logger
	clk       *clockRule // nil: readings leave with the time they have (clock.go)

	cursor   uint64                     // highest sequence number read
	rescanAt time.Time                  // read again from Sentilo's progress then (readings let go from memory)
	pending  map[uint64]*sentiloPending // read, not yet done
	again    chan struct{}              // reconnect: offer what is pending now
	acked    atomic.Uint64              // buffered readings (entries) Sentilo has in full

	// keep holds, durably, the ids Sentilo stored of a reading it accepted
	// only in part (a 404 naming the reading's other sensors), so that a
	// restart does not send them again (accepted.go); nil: memory only.
	keep     acceptedKeeper
	accepted map[uint64][]string // loaded at the first step, seq → ids
}

// sentiloPending is one buffer entry whose values are not all delivered.
type sentiloPending struct {
	rs   []sentilo.Reading // the values Sentilo has an id for, Key = seq
	done []bool
	at   time.Time // offer again at
	kept int       // how many of its values are kept as accepted (accepted.go)
}

func newSentiloOutput(q outputQueue, c sentiloClient, ids map[sentilo.Quantity]string, batchMax int, batchWait time.Duration,
	clock clockwork.Clock, log *slog.Logger) *sentiloOutput {
	return &sentiloOutput{q: q, c: c, ids: ids, batchMax: batchMax, batchWait: batchWait, clock: clock, log: log,
		pending: map[uint64]*sentiloPending{}, again: make(chan struct{}, 1)}
}

// reconnect follows a change of the TLS material (a reload): the client
// drops its connections and the backoff of failed exchanges, and what is
// pending is offered again now instead of when that backoff would have
// ended (held sensors keep their own retry times: the client answers for
// them without a request).
func (s *sentiloOutput) reconnect() {
	s.c.Reconnect()
	select {
	case s.again <- struct{}{}:
	default:
	}
}

func (s *sentiloOutput) Name() string { return "sentilo" }

// Run delivers until ctx is done.
func (s *sentiloOutput) Run(ctx context.Context) error {
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if err := s.c.Wait(ctx); err != nil {
			return nil
		}
		wait, err := s.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Error("sentilo: read the buffer", "err", err)
			wait = time.Second
		}
		if wait == 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-s.q.Notify():
		case <-timer.Chan():
		case <-s.again:
			for _, p := range s.pending {
				p.at = time.Time{}
			}
		}
	}
}

// step sends one batch if one is due and returns how long to wait before
// the next step (0: at once).
func (s *sentiloOutput) step(ctx context.Context) (time.Duration, error) {
	s.loadAccepted()
	now := s.clock.Now()
	var rs []sentilo.Reading
	next := now.Add(time.Hour)
	// Readings offered before and due again, oldest first.
	var due []uint64
	for seq, p := range s.pending {
		if !now.Before(p.at) {
			due = append(due, seq)
		} else if p.at.Before(next) {
			next = p.at
		}
	}
	slices.Sort(due)
	for _, seq := range due {
		p := s.pending[seq]
		if len(rs)+len(p.rs) > s.batchMax && len(rs) > 0 {
			break
		}
		for i, r := range p.rs {
			if !p.done[i] {
				rs = append(rs, r)
			}
		}
	}
	if len(s.pending) >= maxSentiloPending {
		s.evict(now)
	}
	if !s.rescanAt.IsZero() && !now.Before(s.rescanAt) {
		s.cursor, s.rescanAt = 0, time.Time{} // the view starts at Sentilo's progress
	}
	if !s.rescanAt.IsZero() && s.rescanAt.Before(next) {
		next = s.rescanAt
	}
	// New readings, while there is room.
	var fresh []buffer.Entry
	if len(rs) < s.batchMax && len(s.pending) < maxSentiloPending {
		es, err := s.q.ReadAfter(s.cursor, s.batchMax-len(rs), 0)
		if err != nil {
			return 0, err
		}
		if len(es) > 0 && len(rs) == 0 && len(es) < s.batchMax && s.batchWait > 0 {
			// A partial batch of new readings waits batch_wait from the
			// oldest, unless an occupancy change or a zone count is in it.
			if until := es[0].Time.Add(s.batchWait); now.Before(until) && !urgent(es) {
				return min(until.Sub(now), next.Sub(now)), nil
			}
		}
		fresh = es
	}
	var bad []uint64
	held := false // the clock rule holds the next reading
	for _, e := range fresh {
		// The clock rule, as for MQTT: a reading taken before the clock
		// could be trusted waits (and so does every one behind it, in
		// order), then leaves with its corrected time; one that can never
		// get a true time is let go.
		var dec clocksync.Decision
		if s.clk != nil {
			if dec = s.clk.release(&e); dec.Hold && !dec.Never {
				held = true
				if look := now.Add(clockCheckEvery); look.Before(next) {
					next = look
				}
				break
			}
		}
		s.cursor = max(s.cursor, e.Seq)
		if _, ok := s.pending[e.Seq]; ok {
			continue // read again by a rescan: already waiting
		}
		if dec.Never {
			s.ack(e.Seq)
			continue
		}
		p, err := s.decode(e)
		if err != nil {
			bad = append(bad, e.Seq)
			continue
		}
		if !dec.Time.IsZero() {
			for i := range p.rs {
				p.rs[i].Time = dec.Time // Sentilo has no field for the mark: the corrected time is what it gets
			}
		}
		if len(p.rs) == 0 || s.restoreAccepted(e.Seq, p) { // nothing (left) for Sentilo
			s.ack(e.Seq)
			continue
		}
		s.pending[e.Seq] = p
		for i, r := range p.rs {
			if !p.done[i] { // restoreAccepted: what Sentilo stored before a restart
				rs = append(rs, r)
			}
		}
	}
	if len(bad) > 0 {
		s.log.Error("sentilo: buffered readings cannot be decoded; they are not sent to Sentilo", "seqs", bad)
		if err := s.q.Ack(bad...); err != nil {
			s.log.Error("sentilo: acknowledge undecodable readings", "err", err)
		}
	}
	if len(rs) == 0 {
		if len(fresh) > 0 && !held {
			return 0, nil
		}
		return max(next.Sub(now), time.Millisecond), nil
	}
	out := s.c.Publish(ctx, rs)
	var done []uint64
	touched := map[uint64]bool{}
	for i, o := range out {
		seq := rs[i].Key
		p := s.pending[seq]
		if p == nil {
			continue
		}
		if !touched[seq] {
			touched[seq] = true
			p.at = time.Time{}
		}
		idx := slices.IndexFunc(p.rs, func(r sentilo.Reading) bool { return r.ID == rs[i].ID })
		switch o.Status {
		case sentilo.Acked, sentilo.SetAside:
			p.done[idx] = true
		default:
			if p.at.IsZero() || o.RetryAt.Before(p.at) {
				p.at = o.RetryAt
			}
		}
	}
	for seq := range touched {
		p := s.pending[seq]
		if !slices.Contains(p.done, false) {
			done = append(done, seq)
			delete(s.pending, seq)
			s.forgetAccepted(seq, p)
		} else {
			s.keepAccepted(seq, p)
		}
	}
	if len(done) > 0 {
		slices.Sort(done)
		if err := s.q.Ack(done...); err != nil && !errors.Is(err, buffer.ErrClosed) {
			s.log.Error("sentilo: acknowledge in the buffer", "err", err)
		}
		s.acked.Add(uint64(len(done)))
	}
	return 0, nil
}

// evict lets go of held readings not due yet of which nothing was stored
// (they stay in the buffer) and schedules a read from Sentilo's progress
// for the earliest of their retries.
func (s *sentiloOutput) evict(now time.Time) {
	n := 0
	for seq, p := range s.pending {
		if !p.at.After(now) || slices.Contains(p.done, true) {
			continue
		}
		if s.rescanAt.IsZero() || p.at.Before(s.rescanAt) {
			s.rescanAt = p.at
		}
		delete(s.pending, seq)
		n++
	}
	if n > 0 {
		s.log.Warn("sentilo: many readings held; letting them go from memory, they stay in the buffer and are read again at their retry",
			"readings", n, "retry_at", s.rescanAt.UTC().Format(time.RFC3339))
	}
}

func (s *sentiloOutput) ack(seq uint64) {
	if err := s.q.Ack(seq); err != nil && !errors.Is(err, buffer.ErrClosed) {
		s.log.Error("sentilo: acknowledge in the buffer", "err", err)
	}
}

// urgent: an occupancy change or zone count goes without batch_wait.
func urgent(es []buffer.Entry) bool {
	for _, e := range es {
		if e.Priority == buffer.ClassOccupancy || e.Priority == buffer.ClassZone {
			return true
		}
	}
	return false
}

// decode turns a buffered reading into one Sentilo reading per value that
// has a Sentilo id; the others (the drop report's per-sensor parts) are
// not published.
func (s *sentiloOutput) decode(e buffer.Entry) (*sentiloPending, error) {
	r, err := senml.DecodeReading(e.Data)
	if err != nil {
		return nil, err
	}
	p := &sentiloPending{}
	for _, v := range r.Values {
		id, ok := s.ids[sentilo.Quantity{Sensor: r.Sensor, Quantity: v.Quantity}]
		if !ok {
			continue
		}
		p.rs = append(p.rs, sentilo.Reading{ID: id, Sensor: r.Sensor, Value: v, Float32: v.Float32, Time: r.Time, Key: e.Seq})
	}
	p.done = make([]bool, len(p.rs))
	return p, nil
}

// zoneReading is a zone's counts as a reading of its own class
// (buffer.ClassZone): the Sentilo output publishes it as
// <agent.id>-<zone>-free/-occupied/-unknown/-total, as durably as any
// reading; MQTT leaves it alone (its retained zone messages are guidance's).
func zoneReading(z guidance.ZoneState, at time.Time) drivers.Reading {
	return drivers.Reading{Sensor: z.Zone, Time: at, Values: []drivers.Value{
		drivers.Number("free", drivers.UnitCount, float64(z.Free)),
		drivers.Number("occupied", drivers.UnitCount, float64(z.Occupied)),
		drivers.Number("unknown", drivers.UnitCount, float64(z.Unknown)),
		drivers.Number("total", drivers.UnitCount, float64(z.Total)),
	}}
}

// zoneRecords are changed zones' counts as buffer records for Sentilo
// (ClassZone: MQTT acknowledges them unsent, the bound drops them last).
func (a *agent) zoneRecords(zones []guidance.ZoneState) []buffer.Record {
	recs := make([]buffer.Record, 0, len(zones))
	for _, z := range zones {
		at := z.Changed
		if at.IsZero() {
			at = a.clock.Now()
		}
		data, err := senml.AppendReading(nil, zoneReading(z, at))
		if err != nil {
			a.log.Error("zone counts not kept for sentilo", "zone", z.Zone, "err", err)
			continue
		}
		recs = append(recs, buffer.Record{Key: z.Zone, Priority: buffer.ClassZone, Data: data})
	}
	return recs
}

// zonesForSentilo hands every changed zone's counts to the buffer through
// the samplers' hand-off: as durable as readings, and the zone pipeline
// (signs, retained messages) never waits for the disk.
func (a *agent) zonesForSentilo(zones []guidance.ZoneState) {
	for _, rec := range a.zoneRecords(zones) {
		a.hand.put(rec)
	}
}

// Status is the Sentilo output's part of the status message.
func (s *sentiloOutput) Status() OutputStatus {
	st := s.c.Stats()
	o := OutputStatus{Acked: st.Acked, SetAside: st.SetAside, Resent: st.Resent, Unknown: st.Unknown,
		Requests: st.Requests, Throttled: st.Throttled, Refused: st.Refused, Failed: st.Failed}
	if g := s.c.Gate(); !g.Until.IsZero() {
		o.Gate, o.GateUntil = g.Cause, g.Until.UTC()
	}
	for _, h := range s.c.Held() {
		o.Held = append(o.Held, HeldStatus{ID: h.ID, Sensor: h.Sensor, Reason: h.Reason, Readings: h.Readings,
			Since: h.Since.UTC(), NextTry: h.NextTry.UTC()})
	}
	return o
}
