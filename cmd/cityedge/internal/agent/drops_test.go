package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/drivers"
	"github.com/jonboulle/clockwork"
)

// TestOutageKeepsOccupancy: a 1 MiB buffer, the broker away for an hour of
// the fake clock, 60 environmental sensors every 10 s and one parking bay
// changing every 10 s, the drop counters reported every 5 s as the agent
// does. When the broker returns, every occupancy change is delivered, the
// counter reports never pushed one out (at most one of them was kept), and
// the last report equals the counters in the status.
func TestOutageKeepsOccupancy(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	log := slog.New(slog.DiscardHandler)
	q, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{MaxBytes: 1 << 20, Clock: clk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	cfg := &config.Config{}
	cfg.Agent.ID = "gw-0042"
	a := &agent{cfg: cfg, log: log, clock: clk, q: q, fwd: newForwarder(q, "gw-0042", 100, time.Second, clk, log)}
	ctx := context.Background()
	// put appends as the hand-off's writer does (handoff_test covers the
	// hand-off itself): environmental readings and occupancy changes.
	put := func(r drivers.Reading, class buffer.Class) error {
		rec, ok := a.record(r, class)
		if !ok {
			return fmt.Errorf("reading of %s not encoded", r.Sensor)
		}
		_, err := a.q.Append(ctx, []buffer.Record{rec})
		if errors.Is(err, buffer.ErrNotDurable) {
			return nil // held in the buffer's memory ring, as in the agent
		}
		return err
	}

	const sensors, step = 60, 10 * time.Second
	var changes []bool
	var reports dropCounts
	occupied := false
	for at := time.Duration(0); at < time.Hour; at += step {
		var wg sync.WaitGroup
		for i := range sensors {
			wg.Add(1)
			go func() { // side by side, as the sampler's goroutines: group commits
				defer wg.Done()
				r := drivers.Reading{Sensor: fmt.Sprintf("air-%02d", i), Time: clk.Now(), Values: []drivers.Value{
					drivers.Number(drivers.Temperature, drivers.UnitCelsius, 20+float64(i)/10),
					drivers.Number(drivers.Humidity, drivers.UnitPercentRH, 55.5),
					drivers.Number(drivers.Pressure, drivers.UnitPascal, 101325)}}
				if err := put(r, buffer.ClassEnvironmental); err != nil {
					t.Error(err)
				}
			}()
		}
		occupied = !occupied
		changes = append(changes, occupied)
		if err := put(drivers.Reading{Sensor: "bay-1", Time: clk.Now(), Values: []drivers.Value{drivers.Flag(drivers.Occupied, occupied)}}, buffer.ClassOccupancy); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		clk.Advance(step / 2)
		reports = a.reportDropsOnce(ctx, reports)
		clk.Advance(step / 2)
		reports = a.reportDropsOnce(ctx, reports)
	}
	st := q.Stats()
	if st.DroppedTotal == 0 {
		t.Fatalf("nothing was dropped (%d readings buffered): the test does not load the bound", st.Count)
	}
	if (reports != dropCounts{st.DroppedTotal, st.Corrupt}) {
		t.Fatalf("last report %+v, status %d dropped, %d corrupt", reports, st.DroppedTotal, st.Corrupt)
	}
	t.Logf("after the outage: %d readings buffered, %d dropped (%d occupancy changes made)", st.Count, st.DroppedTotal, len(changes))

	// The broker is back: drain everything through the forwarder.
	a.fwd.Rewind()
	var bay []bool
	var lastReport map[string]float64
	reportsSeen := 0
	for sent := uint64(0); sent < st.Count; {
		b, err := a.fwd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pack []struct {
			N  string   `json:"n"`
			U  string   `json:"u"`
			V  *float64 `json:"v"`
			VB *bool    `json:"vb"`
		}
		if err := json.Unmarshal(b.Payload, &pack); err != nil {
			t.Fatalf("pack: %v", err)
		}
		for _, r := range pack {
			switch {
			case r.N == "bay-1/occupied":
				bay = append(bay, *r.VB)
			case strings.HasPrefix(r.N, config.ReservedSensor+"/"):
				if r.U != drivers.UnitCount {
					t.Errorf("%s has unit %q, want %q", r.N, r.U, drivers.UnitCount)
				}
				if r.N == config.ReservedSensor+"/dropped" {
					reportsSeen++
					lastReport = map[string]float64{}
				}
				lastReport[strings.TrimPrefix(r.N, config.ReservedSensor+"/")] = *r.V
			}
		}
		sent += uint64(len(b.Seqs))
		if err := a.fwd.Acked(b); err != nil {
			t.Fatal(err)
		}
	}
	if len(bay) != len(changes) {
		t.Fatalf("%d of %d occupancy changes delivered", len(bay), len(changes))
	}
	for i := range bay {
		if bay[i] != changes[i] {
			t.Fatalf("occupancy change %d delivered as %t, made as %t", i, bay[i], changes[i])
		}
	}
	if reportsSeen != 1 {
		t.Errorf("%d counter reports were buffered, want exactly one (the newest)", reportsSeen)
	}
	if lastReport["dropped"] != float64(st.DroppedTotal) || lastReport["corrupt"] != float64(st.Corrupt) {
		t.Errorf("last report %v, status dropped %d corrupt %d", lastReport, st.DroppedTotal, st.Corrupt)
	}
	var perSensor float64
	for k, v := range lastReport {
		if strings.HasPrefix(k, "dropped/") {
			perSensor += v
			if want := st.Dropped[strings.TrimPrefix(k, "dropped/")]; v != float64(want) {
				t.Errorf("report %s = %v, status %d", k, v, want)
			}
		}
	}
	if perSensor != float64(st.DroppedTotal) {
		t.Errorf("per-sensor counts add up to %v, total %d", perSensor, st.DroppedTotal)
	}
}
