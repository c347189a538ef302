package metrics

import (
	"strings"
	"testing"
)

// TestOutputsEncode: each output's progress and drops, and Sentilo's
// counters, held sensors and gate, in the text exposition.
func TestOutputsEncode(t *testing.T) {
	var b strings.Builder
	err := Encode(&b, Snapshot{Agent: "gw", Outputs: []Output{
		{Name: "sentilo", Progress: 42, Dropped: 3, Acked: 100, SetAside: 1, Resent: 2, Unknown: 2,
			Held: []Held{{ID: "gw-bay2-occupied", Reason: "404.1", Readings: 7}}, Gate: "429 quota"},
		{Name: "mqtt", Progress: 50},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`cityedge_output_progress_seq{output="mqtt"} 50`,
		`cityedge_output_progress_seq{output="sentilo"} 42`,
		`cityedge_output_dropped_readings_total{output="sentilo"} 3`,
		`cityedge_output_set_aside_readings_total{output="sentilo"} 1`,
		`cityedge_output_resent_readings_total{output="sentilo"} 2`,
		`cityedge_output_held_readings{output="sentilo",id="gw-bay2-occupied",reason="404.1"} 7`,
		`cityedge_output_gate_closed{output="sentilo",cause="429 quota"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	if strings.Contains(out, `acked_readings_total{output="mqtt"}`) {
		t.Error("MQTT has no Sentilo counters")
	}
	b.Reset()
	if err := Encode(&b, Snapshot{Agent: "gw"}); err != nil || strings.Contains(b.String(), "cityedge_output_") {
		t.Errorf("with MQTT alone no output families: %v\n%s", err, b.String())
	}
}

// TestUplinkOff: a Sentilo-only gateway has no MQTT output; the
// uplink-connected series is absent rather than a 0 that would alarm.
func TestUplinkOff(t *testing.T) {
	for _, tc := range []struct {
		s    Snapshot
		want bool
	}{
		{Snapshot{Agent: "gw"}, true},
		{Snapshot{Agent: "gw", UplinkConnected: true}, true},
		{Snapshot{Agent: "gw", UplinkOff: true}, false},
	} {
		got := false
		for _, f := range Families(tc.s) {
			if f.Name == "cityedge_uplink_connected" {
				got = true
			}
		}
		if got != tc.want {
			t.Errorf("%+v: cityedge_uplink_connected present = %v, want %v", tc.s, got, tc.want)
		}
	}
}
