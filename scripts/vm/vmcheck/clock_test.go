package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type clockReading struct {
	seq      uint64
	sensor   string
	hostAt   time.Time // the host's clock when it was taken
	sent     time.Time // the time it carries
	tq       string
	arrived  time.Time
	unlogged bool // not in the agent's log
	lost     bool // not at the broker
}

func makeClockRun(mutate func(*[]clockReading)) string {
	step := 5 * 365 * 24 * time.Hour
	hostSync := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	var rds []clockReading
	seq := uint64(1000)
	for at := hostSync.Add(-20 * time.Second); at.Before(hostSync.Add(4 * time.Second)); at = at.Add(clockInterval) {
		for _, s := range []string{nameBME, nameSHT} {
			seq++
			rd := clockReading{seq: seq, sensor: s, hostAt: at, sent: at.Add(-30 * time.Millisecond), arrived: hostSync.Add(1500 * time.Millisecond)}
			if at.Before(hostSync) {
				rd.tq = "corrected"
			} else {
				rd.arrived = at.Add(300 * time.Millisecond)
			}
			rds = append(rds, rd)
		}
	}
	if mutate != nil {
		mutate(&rds)
	}
	var console, capture []string
	console = append(console, "VMTEST: clock phase: guest clock 2021-12-07T08:00:00Z")
	for _, rd := range rds {
		if rd.unlogged {
			continue
		}
		guest := rd.hostAt
		if rd.hostAt.Before(hostSync) {
			guest = rd.hostAt.Add(-step)
		}
		console = append(console, fmt.Sprintf(`clockagent| time=%s level=DEBUG msg="reading buffered" sensor=%s seq=%d`, guest.Format(time.RFC3339Nano), rd.sensor, rd.seq))
	}
	console = append(console, fmt.Sprintf("VMCLOCK: step_ns=%d guest_before=%s host=%s rtt_ns=420000 unsync_before=true unsync_after=false maxerror_us=10000",
		step.Nanoseconds(), hostSync.Add(-step).Format(time.RFC3339Nano), hostSync.Format(time.RFC3339Nano)))
	for _, rd := range rds {
		if rd.lost {
			continue
		}
		rec := fmt.Sprintf(`[{"bn":"gw-vm/","bt":%.3f,"n":"%s/temperature","u":"Cel","v":20,"seq":%d`, float64(rd.sent.UnixMilli())/1000, rd.sensor, rd.seq)
		if rd.tq != "" {
			rec += fmt.Sprintf(`,"tq":%q`, rd.tq)
		}
		rec += "}]"
		capture = append(capture, fmt.Sprintf("%.9f cityedge-clock/gw-vm/readings %s", float64(rd.arrived.UnixNano())/1e9, rec))
	}
	capture = append(capture, fmt.Sprintf(`%.9f cityedge-clock/gw-vm/status {"state":"online"}`, float64(hostSync.UnixNano())/1e9))
	return strings.Join(console, "\n") + "\x00" + strings.Join(capture, "\n")
}

func TestCheckClock(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*[]clockReading)
		want   string // a failed check containing this; "" = all pass
	}{
		{"correct", nil, ""},
		{"a reading 3 s off", func(r *[]clockReading) { (*r)[5].sent = (*r)[5].hostAt.Add(3 * time.Second) }, "from the host's clock when it was taken"},
		{"a held reading sent with the guest's wrong time", func(r *[]clockReading) { (*r)[0].sent = (*r)[0].hostAt.Add(-5 * 365 * 24 * time.Hour) }, "from the host's clock when it was taken"},
		{"marked unsynced", func(r *[]clockReading) { (*r)[3].tq = "unsynced" }, "no record marked unsynced"},
		{"an early reading not marked", func(r *[]clockReading) { (*r)[3].tq = "" }, "marked corrected"},
		{"sent before the sync", func(r *[]clockReading) { (*r)[0].arrived = (*r)[0].hostAt.Add(time.Second) }, "nothing reached the broker before the sync"},
		{"a held reading lost", func(r *[]clockReading) { (*r)[4].lost = true }, "every reading taken before the sync reached the broker"},
		{"a reading the agent never logged", func(r *[]clockReading) { (*r)[7].unlogged = true }, "logged storing"},
		{"sampled only 10 s", func(r *[]clockReading) { *r = (*r)[40:] }, "sampled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			console, capture, _ := strings.Cut(makeClockRun(c.mutate), "\x00")
			var r result
			checkClock(&r, "gw-vm", console, capture)
			if c.want == "" {
				if len(r.failed) > 0 || len(r.passed) < 8 {
					t.Errorf("failed %v (passed %d)", r.failed, len(r.passed))
				}
				return
			}
			for _, f := range r.failed {
				if strings.Contains(f, c.want) {
					return
				}
			}
			t.Errorf("no failure saying %q; failed %v", c.want, r.failed)
		})
	}
	var r result
	checkClock(&r, "gw-vm", "no VMCLOCK line", "")
	if len(r.failed) != 1 || !strings.Contains(r.failed[0], "VMCLOCK") {
		t.Errorf("without ntpset's line: %v", r.failed)
	}
}
