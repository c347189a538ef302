package buffer

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// reportOf encodes drop counters the way a report carries them, so the
// test can compare the stored report with Stats.
func reportOf(st Stats) []byte {
	keys := make([]string, 0, len(st.Dropped))
	for k := range st.Dropped {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := fmt.Appendf(nil, "dropped=%d corrupt=%d", st.DroppedTotal, st.Corrupt)
	for _, k := range keys {
		b = fmt.Appendf(b, " %s=%d", k, st.Dropped[k])
	}
	return b
}

// TestOutageKeepsOccupancy is an hour-long broker outage on a 1 MiB buffer,
// in simulated time: 60 environmental sensors every 5 s, one parking bay
// changing every 50 s, and the drop report put every 5 s. Nothing is acked.
// Every occupancy change survives, at most one report is ever stored, and
// the last one equals the drop counters.
func TestOutageKeepsOccupancy(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	q := openT(t, filepath.Join(t.TempDir(), "buffer.db"), Options{MaxBytes: 1 << 20, Clock: clock})
	defer closeT(t, q)
	ctx := context.Background()
	const step = 5 * time.Second
	var occupancy []uint64
	var lastReport uint64
	countReports := func() (n int, last Entry) {
		for _, e := range readAll(t, q) {
			if e.Priority == ClassReport {
				n++
				last = e
			}
		}
		return n, last
	}
	for tick := 0; time.Duration(tick)*step < time.Hour; tick++ {
		recs := make([]Record, 0, 61)
		for s := range 60 {
			key := fmt.Sprintf("air-%02d", s)
			recs = append(recs, Record{Key: key, Priority: ClassEnvironmental, Data: payload(key, tick, 90)})
		}
		if tick%10 == 0 {
			recs = append(recs, Record{Key: "bay-1", Priority: ClassOccupancy, Data: fmt.Appendf(nil, "occupied=%t", tick%20 == 0)})
		}
		first := appendT(t, q, recs...)
		if tick%10 == 0 {
			occupancy = append(occupancy, first+60)
		}
		seq, err := q.PutReport(ctx, Record{Key: "cityedge", Data: reportOf(q.Stats())})
		if err != nil {
			t.Fatal(err)
		}
		if seq <= lastReport {
			t.Fatalf("report seq %d not above the previous %d", seq, lastReport)
		}
		lastReport = seq
		if tick%120 == 0 {
			if n, _ := countReports(); n != 1 {
				t.Fatalf("after %v: %d reports stored, want 1", time.Duration(tick)*step, n)
			}
		}
		clock.Advance(step)
	}
	st := q.Stats()
	if st.Dropped["bay-1"] != 0 || st.DroppedTotal == 0 {
		t.Fatalf("drops %v: want environmental drops and none of bay-1", st.Dropped)
	}
	if st.Dropped["cityedge"] != 0 {
		t.Errorf("the report was dropped %d times; it should be replaced, not dropped", st.Dropped["cityedge"])
	}
	stored := map[uint64]bool{}
	for _, e := range readAll(t, q) {
		stored[e.Seq] = true
	}
	for _, s := range occupancy {
		if !stored[s] {
			t.Fatalf("occupancy change %d of %d lost (dropped %v)", s, len(occupancy), st.Dropped)
		}
	}
	n, last := countReports()
	if n != 1 || last.Seq != lastReport {
		t.Fatalf("%d reports stored, last %d; want only the newest, %d", n, last.Seq, lastReport)
	}
	if want := reportOf(st); !bytes.Equal(last.Data, want) {
		t.Errorf("stored report %q, Stats say %q", last.Data, want)
	}
	if want := clock.Now().Add(-step).Truncate(time.Millisecond); !last.Time.Equal(want) {
		t.Errorf("report stamped %v, want the injected clock's %v", last.Time, want)
	}
	t.Logf("%d occupancy changes kept, %d records, %d dropped", len(occupancy), st.Count, st.DroppedTotal)
}

// TestPutReportReplacesOlderReports: on a file of format 1, where every
// report was an ordinary record, the first PutReport replaces all of them;
// reports already acked stay acked, and other classes are untouched.
func TestPutReportReplacesOlderReports(t *testing.T) {
	path, m := unpackFixture(t, "v1-983176d")
	q := openT(t, path, Options{})
	defer closeT(t, q)
	before := readAll(t, q)
	seq, err := q.PutReport(context.Background(), Record{Key: "cityedge", Priority: ClassOccupancy, Data: []byte("dropped=7")})
	if err != nil {
		t.Fatal(err)
	}
	after := readAll(t, q)
	var want []uint64
	for _, e := range before {
		if e.Priority != ClassReport {
			want = append(want, e.Seq)
		}
	}
	want = append(want, seq)
	var got []uint64
	for _, e := range after {
		got = append(got, e.Seq)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after PutReport on the %s fixture: %d records, want %d", m.Commit, len(got), len(want))
	}
	if e := after[len(after)-1]; e.Priority != ClassReport || string(e.Data) != "dropped=7" {
		t.Errorf("stored report %+v, want class %d", e, ClassReport)
	}
}
