package diagnose

import (
	"context"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/guidance"
)

func guidanceConfig() *config.Config {
	cfg := &config.Config{}
	cfg.Agent.ID = "gw-1"
	cfg.Sensors = []config.SensorConfig{{Name: "bay-1", Driver: "gpio-presence", Pin: "GPIO17",
		Location: &guidance.Location{Point: [2]float64{2.1701, 41.387}}}}
	cfg.Zones = []guidance.Zone{{Name: "z1", Bays: []string{"bay-1"}}}
	cfg.Signs = []config.SignConfig{
		{Name: "corner", Zone: "z1", Driver: config.SignHT16K33, Bus: "1", Address: 0x70, Brightness: 8},
		{Name: "lamp", Zone: "z1", Driver: config.SignGPIOLamp, Pin: "GPIO22"},
	}
	return cfg
}

func lines(r *report) string {
	var b strings.Builder
	for _, c := range r.checks {
		b.WriteString(c.Verdict + " " + c.Area + " " + c.Name + " " + c.Detail + "\n")
	}
	return b.String()
}

func TestDiagnoseGuidanceLive(t *testing.T) {
	live := &agent.LiveState{}
	live.Zones = []agent.ZoneStatus{{Zone: "z1", Free: 0, Occupied: 1, Total: 1, Seq: 7, Sign: "FULL", Lamp: true,
		Bays: []agent.BayStatus{{Sensor: "bay-1", State: "occupied"}}}}
	live.Signs = map[string]agent.SignState{
		"corner": {Zone: "z1", Driver: "ht16k33", Where: "bus 1 address 0x70", Shows: "FULL", OK: true, Writes: 3},
		"lamp":   {Zone: "z1", Driver: "gpio-lamp", Where: "pin GPIO22", Errors: 4, LastError: "gpio: no acknowledge"},
	}
	r := &report{}
	diagnoseGuidance(context.Background(), guidanceConfig(), live, Options{SignTest: true}, r)
	out := lines(r)
	for _, want := range []string{
		`PASS zone z1 free 0, occupied 1, unknown 0 of 1 (seq 7); signs show "FULL", lamps on; bays: bay-1 occupied`,
		`PASS sign corner ht16k33 bus 1 address 0x70 (zone z1): shows "FULL"`,
		`FAIL sign lamp gpio-lamp pin GPIO22 (zone z1): failing, 4 errors, last: gpio: no acknowledge`,
		`WARN sign test not run: the running agent drives the signs`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if got := withLocation(guidanceConfig().Sensors[0], "pin GPIO17"); got != "pin GPIO17 @ [2.1701, 41.387]" {
		t.Errorf("location column: %q", got)
	}
}

func TestDiagnoseSignTestSimulated(t *testing.T) {
	r := &report{}
	diagnoseGuidance(context.Background(), guidanceConfig(), nil, Options{Simulate: true, SignTest: true}, r)
	out := lines(r)
	for _, want := range []string{"PASS sign corner bus 1 address 0x70: TEST PATTERN", "PASS sign lamp pin GPIO22: TEST PATTERN"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
