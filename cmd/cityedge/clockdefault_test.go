//go:build linux

package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/scripts/testbroker"
)

// defaultHoldSetup is newSetup's configuration with the shipped clock rule
// (no [clock] table: clock.hold 10 minutes) and debug logging, whose
// "reading buffered" lines say when each reading was stored.
func defaultHoldSetup(t *testing.T, b *testbroker.Broker) *testSetup {
	t.Helper()
	s := newSetup(t, b, b.PKI.Client, "")
	text, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(text), testClockRule, "\n", 1)
	cfg = strings.Replace(cfg, "[agent]\n", "[agent]\nlog_level = \"debug\"\n", 1)
	if strings.Contains(cfg, "[clock]") || !strings.Contains(cfg, `log_level = "debug"`) {
		t.Fatalf("could not state the default clock rule:\n%s", cfg)
	}
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

var bufferedLine = regexp.MustCompile(`^time=(\S+) level=DEBUG msg="reading buffered" sensor=\S+ seq=(\d+)`)

// bufferedAt reads when each reading was stored, by seq, from the agent's
// debug log (the wall clock of the machine, which keeps the right time).
func bufferedAt(t *testing.T, log string) map[uint64]time.Time {
	t.Helper()
	out := map[uint64]time.Time{}
	for _, l := range strings.Split(log, "\n") {
		m := bufferedLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		seq, err2 := strconv.ParseUint(m[2], 10, 64)
		if err != nil || err2 != nil {
			t.Fatalf("log line %q: %v %v", l, err, err2)
		}
		out[seq] = at
	}
	return out
}

// TestDefaultHoldSyncedDelivers: on a machine whose NTP client has
// synchronised the clock, the shipped clock rule (clock.hold 10 minutes)
// holds nothing: readings reach the broker at once, unmarked.
func TestDefaultHoldSyncedDelivers(t *testing.T) {
	k := holdKernelClock(t)
	k.sync()
	b := testbroker.Start(t, testbroker.Options{})
	s := defaultHoldSetup(t, b)
	col := collect(t, b, "cityedge/test/gw-test")
	start := time.Now()
	p := startAgent(t, s.config, "--simulate")
	waitFor(t, "30 readings at the broker", 30*time.Second, func() bool { return len(col.snapshot()) >= 30 })
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
	recs := col.snapshot()
	marked := 0
	for _, r := range recs {
		if r.tq != "" {
			marked++
		}
		if at := time.UnixMilli(r.ms); at.Before(start.Add(-time.Second)) || at.After(r.at.Add(time.Second)) {
			t.Errorf("%s seq %d has time %v: not between the agent's start (%v) and its arrival (%v)", r.name, r.seq, at, start, r.at)
		}
	}
	if marked > 0 {
		t.Errorf("%d of %d records marked tq on a synchronised clock", marked, len(recs))
	}
	st := col.lastStatus()
	clk, _ := st["clock"].(map[string]any)
	if clk == nil || clk["synced"] != true || clk["held"] != float64(0) {
		t.Errorf("status clock = %v, want synced and nothing held", st["clock"])
	}
	t.Logf("%d records delivered unmarked with the default clock.hold", len(recs))
}

// TestDefaultHoldUnsyncedThenSynced: the shipped clock rule on a machine
// without NTP holds every reading (nothing reaches the broker, though the
// uplink is up); when the NTP client synchronises the clock, every reading
// taken before leaves marked corrected, with the time it was taken (±2 s of
// the machine's clock when the agent stored it), and nothing is marked
// unsynced.
func TestDefaultHoldUnsyncedThenSynced(t *testing.T) {
	k := holdKernelClock(t)
	k.unsync()
	b := testbroker.Start(t, testbroker.Options{})
	s := defaultHoldSetup(t, b)
	col := collect(t, b, "cityedge/test/gw-test")
	p := startAgent(t, s.config, "--simulate")
	waitFor(t, "the agent online with readings held", 30*time.Second, func() bool {
		st := col.lastStatus()
		return st != nil && st["state"] == "online" && strings.Count(p.stderr.String(), `msg="reading buffered"`) >= 30
	})
	// Held: 3 s of sampling, and not one reading at the broker.
	time.Sleep(3 * time.Second)
	if n := len(col.snapshot()); n > 0 {
		t.Fatalf("%d records reached the broker while the kernel says the clock is not synchronised", n)
	}
	syncAt := time.Now()
	k.sync()
	before := bufferedAt(t, p.stderr.String())
	waitFor(t, "every reading taken before the sync at the broker", 30*time.Second, func() bool {
		got := map[uint64]bool{}
		for _, r := range col.snapshot() {
			got[r.seq] = true
		}
		for seq, at := range before {
			if at.Before(syncAt) && !got[seq] {
				return false
			}
		}
		return true
	})
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
	stored := bufferedAt(t, p.stderr.String())
	recs := col.snapshot()
	var corrected, plain int
	for _, r := range recs {
		at, ok := stored[r.seq]
		switch {
		case !ok:
			t.Errorf("%s seq %d: the agent never logged storing it", r.name, r.seq)
			continue
		case r.tq == "unsynced":
			t.Errorf("%s seq %d marked unsynced", r.name, r.seq)
		case at.Before(syncAt) && r.tq != "corrected":
			t.Errorf("%s seq %d, stored before the sync, marked %q, want corrected", r.name, r.seq, r.tq)
		}
		if r.at.Before(syncAt) {
			t.Errorf("%s seq %d reached the broker at %v, before the sync (%v)", r.name, r.seq, r.at, syncAt)
		}
		if r.tq == "corrected" {
			corrected++
		} else {
			plain++
		}
		if d := time.UnixMilli(r.ms).Sub(at); d.Abs() > 2*time.Second {
			t.Errorf("%s seq %d (%q) has time %v, %v from when it was stored (%v)", r.name, r.seq, r.tq, time.UnixMilli(r.ms).UTC(), d, at)
		}
	}
	if corrected < 30 {
		t.Errorf("only %d records corrected", corrected)
	}
	t.Logf("%d records corrected, %d unmarked (taken after the sync)", corrected, plain)
}
