package agent

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/uplink/senml"
)

// dropReportEvery is how often the drop counters are looked at.
const dropReportEvery = 5 * time.Second

// reportDrops puts the buffer's drop counters into the readings stream when
// they change, as <agent id>/cityedge/dropped (total),
// <agent id>/cityedge/dropped/<sensor> and <agent id>/cityedge/corrupt
// (records that could not be decoded), in the SenML unit "count", so that
// integrators see in their own data what every gap in seq cost.
//
// The report is stored with buffer.PutReport: the buffer keeps at most one
// unsent report (the newest replaces the older, since its counters say
// everything the older ones did), and it ranks with environmental readings,
// so that during a long outage the reports can never push out an occupancy
// change.
func (a *agent) reportDrops(ctx context.Context, every time.Duration) {
	var last dropCounts
	t := a.clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		last = a.reportDropsOnce(ctx, last)
	}
}

// dropCounts is what a report said.
type dropCounts struct{ dropped, corrupt uint64 }

// reportDropsOnce stores a report when the counters differ from last and
// returns the counters now reported.
func (a *agent) reportDropsOnce(ctx context.Context, last dropCounts) dropCounts {
	st := a.q.Stats()
	now := dropCounts{st.DroppedTotal, st.Corrupt}
	if now == last {
		return last
	}
	// The buffer logs drops itself, rate-limited; this is the detail.
	a.log.Debug("reporting drop counters in the readings stream", "dropped", st.DroppedTotal, "by_sensor", st.Dropped, "corrupt", st.Corrupt)
	rd := dropReading(st, a.clock.Now())
	boot := a.stampReading(&rd)
	data, err := senml.AppendReading(nil, rd)
	if err == nil {
		rec := buffer.Record{Key: config.ReservedSensor, Data: data, Boot: boot}
		var seq uint64
		seq, err = a.q.PutReport(ctx, rec)
		if a.clk != nil && (err == nil || errors.Is(err, buffer.ErrNotDurable)) {
			a.clk.report(rec, seq)
		}
	}
	switch {
	case errors.Is(err, buffer.ErrNotDurable):
		// Held in memory until the disk takes writes again.
	case err != nil:
		a.log.Error("report drops", "err", err)
		return last
	}
	return now
}

// dropReading is the report of the counters in st.
func dropReading(st buffer.Stats, at time.Time) drivers.Reading {
	vals := []drivers.Value{drivers.Number("dropped", drivers.UnitCount, float64(st.DroppedTotal))}
	names := make([]string, 0, len(st.Dropped))
	for k := range st.Dropped {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vals = append(vals, drivers.Number("dropped/"+k, drivers.UnitCount, float64(st.Dropped[k])))
	}
	vals = append(vals, drivers.Number("corrupt", drivers.UnitCount, float64(st.Corrupt)))
	return drivers.Reading{Sensor: config.ReservedSensor, Time: at, Values: vals}
}
