package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePack(t *testing.T) {
	at := time.Unix(100, 0)
	tests := []struct {
		name    string
		payload string
		want    []record
		wantErr bool
	}{
		{"base name carries over", `[{"bn":"fgw-001/","bt":1,"n":"air-1/temperature","u":"Cel","v":21.5,"seq":7},{"n":"air-1/humidity","v":40,"seq":7},{"n":"bay-1/occupied","vb":true,"seq":8}]`,
			[]record{{"fgw-001", 7, "air-1/temperature", 21.5, at}, {"fgw-001", 7, "air-1/humidity", 40, at}, {"fgw-001", 8, "bay-1/occupied", 0, at}}, false},
		{"no seq", `[{"bn":"fgw-001/","n":"x","v":1}]`, nil, true},
		{"no bn", `[{"n":"x","v":1,"seq":1}]`, nil, true},
		{"not JSON", `{`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePack([]byte(tt.payload), at)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func recs(gw string, seqs ...int64) []record {
	var out []record
	for _, s := range seqs {
		out = append(out, record{GW: gw, Seq: s, Name: "air-1/temperature"})
	}
	return out
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name      string
		a, b      []record
		reconnect int
		ok        bool
		missing   []span
		dupsA     int
		dupsB     int
		onlyA     int
		perRecon  float64
	}{
		{"contiguous across both consumers", recs("g", 1, 2, 3), recs("g", 3, 4), 0, true, nil, 0, 0, 2, 0},
		{"gap is a loss", recs("g", 1, 2, 5), recs("g", 1, 2, 5), 0, false, []span{{3, 4}}, 0, 0, 0, 0},
		{"repeats counted per consumer, smaller one per reconnect", recs("g", 1, 2, 2, 3, 3), recs("g", 1, 2, 3, 3), 2, true, nil, 2, 1, 0, 0.5},
		{"nothing delivered", nil, nil, 0, false, nil, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := analyze([]string{"g"}, tt.a, tt.b, map[string]int{"g": tt.reconnect}, nil)[0]
			if g.OK() != tt.ok || !reflect.DeepEqual(g.Missing, tt.missing) || g.DupsA != tt.dupsA || g.DupsB != tt.dupsB ||
				g.OnlyA != tt.onlyA || g.DupsPerReconnect() != tt.perRecon {
				t.Errorf("got %+v (ok %v, per reconnect %v)", g, g.OK(), g.DupsPerReconnect())
			}
		})
	}
}

func TestAnalyzeDrops(t *testing.T) {
	a := append(recs("g", 1, 2), record{GW: "g", Seq: 3, Name: "cityedge/dropped", V: 4})
	g := analyze([]string{"g"}, a, nil, nil, nil)[0]
	if g.OK() || g.Dropped != 4 || !strings.Contains(describeLoss(g), "dropped counter 4") {
		t.Errorf("drops not reported: %+v: %s", g, describeLoss(g))
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Second)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Second}, {99, 99 * time.Second}, {100, 100 * time.Second}, {0, time.Second}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty input")
	}
}

func TestBusiest(t *testing.T) {
	base := time.Unix(1000, 0)
	ts := []time.Time{base, base.Add(1500 * time.Millisecond), base.Add(1700 * time.Millisecond), base.Add(10 * time.Second)}
	at, n := busiest(ts, base, base.Add(5*time.Second))
	if n != 2 || !at.Equal(base.Add(time.Second)) {
		t.Errorf("busiest = %v, %d; want second 1001 with 2", at, n)
	}
}

func TestFailover(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ev := func(s int, msg, broker string) logEvent {
		return logEvent{At: t0.Add(time.Duration(s) * time.Second), Msg: msg, Broker: broker}
	}
	events := map[string][]logEvent{
		"a": {ev(-50, "uplink: connected", "n1"), ev(0, "uplink: session ended", "n1"), ev(4, "uplink: connected", "n2")},
		"b": {ev(-50, "uplink: connected", "n2")},
		"c": {ev(-50, "uplink: connected", "n1")},
	}
	first := func(gw string, t time.Time) (time.Time, bool) { return t.Add(time.Second), gw == "a" }
	lat, affected, stuck := failover(t0, "n1", events, first)
	if affected != 2 || !reflect.DeepEqual(lat, []time.Duration{5 * time.Second}) || !reflect.DeepEqual(stuck, []string{"c"}) {
		t.Errorf("lat %v affected %d stuck %v", lat, affected, stuck)
	}
}

func TestParseLogLine(t *testing.T) {
	l := `time=2026-12-06T04:06:13.895Z level=INFO msg="uplink: connected" broker=mqtts://127.0.0.1:39789 tls="TLS 1.3" connack_after=3.321s`
	ev, ok := parseLogLine(l)
	if !ok || ev.Msg != "uplink: connected" || ev.Broker != "mqtts://127.0.0.1:39789" || ev.At.UnixMilli()%1000 != 895 || ev.ConnackAfter != 3321*time.Millisecond {
		t.Errorf("got %+v %v", ev, ok)
	}
	if _, ok := parseLogLine(`time=2026-12-06T04:06:13.895Z level=INFO msg="sensor opened"`); ok {
		t.Error("non-uplink line accepted")
	}
}

func TestRotate(t *testing.T) {
	u := []string{"a", "b", "c"}
	if got := rotate(u, 4); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Errorf("rotate = %v", got)
	}
}

func TestConnectedNow(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	cases := []struct {
		evs  []logEvent
		want bool
	}{
		{nil, false},
		{[]logEvent{{At: at(1), Msg: "uplink: connected"}}, true},
		{[]logEvent{{At: at(1), Msg: "uplink: connected"}, {At: at(2), Msg: "uplink: reconnecting in 0.7s"}}, false},
		{[]logEvent{{At: at(1), Msg: "uplink: reconnecting in 83.4s"}, {At: at(2), Msg: "uplink: connected"}}, true},
	}
	for i, c := range cases {
		if got := connectedNow(c.evs); got != c.want {
			t.Errorf("case %d: %v, want %v", i, got, c.want)
		}
	}
}

// TestSkippedByBuffer: a gap wholly inside a range the buffer logged as
// skipped after a crash is not a loss; a gap reaching outside it is.
func TestSkippedByBuffer(t *testing.T) {
	line := `time=2026-12-06T04:54:45.1Z level=WARN msg="` + skippedMsg + `" file=/x/buffer.db from=100 to=199`
	sp, ok := parseSkipped(line)
	if !ok || sp != (span{100, 199}) {
		t.Fatalf("parseSkipped = %v, %v; want 100-199", sp, ok)
	}
	if _, ok := parseSkipped(`time=2026-12-06T04:54:45.1Z level=INFO msg="uplink: connected"`); ok {
		t.Error("an unrelated line parsed as a skipped range")
	}
	skipped := map[string][]span{"g": {sp}}
	explained := analyze([]string{"g"}, recs("g", 98, 99, 100, 101, 200, 201), nil, nil, skipped)[0]
	if !explained.OK() || len(explained.Skipped) != 1 || explained.Skipped[0] != (span{102, 199}) {
		t.Errorf("gap 102-199 inside the skipped 100-199: %+v; want OK with it as skipped", explained)
	}
	lost := analyze([]string{"g"}, recs("g", 98, 99, 201), nil, nil, skipped)[0]
	if lost.OK() || len(lost.Missing) != 1 || lost.Missing[0] != (span{100, 200}) {
		t.Errorf("gap 100-200 reaching past the skipped 100-199: %+v; want it missing", lost)
	}
}
