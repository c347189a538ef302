package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

// TestLiveTiming: a running agent's missed sampling instants and the
// uplink's next attempt reach the report.
func TestLiveTiming(t *testing.T) {
	cfg := &config.Config{Sensors: []config.SensorConfig{{Name: "air-1", Driver: "bme280", Interval: 100 * time.Millisecond}}}
	live := &agent.LiveState{}
	live.Sensors = map[string]agent.SensorState{"air-1": {Driver: "bme280", Open: true, Readings: 90, MissedTicks: 12,
		LastOK: time.Now()}}
	live.Uplink = agent.UplinkState{Broker: "mqtts://b:8883", LastError: "connection refused",
		NextAttempt: time.Now().Add(700 * time.Millisecond), Attempts: 3}
	var r report
	diagnoseLive(cfg, live, &r)
	var sensor, uplink Check
	for _, c := range r.checks {
		switch c.Area {
		case "sensor":
			sensor = c
		case "uplink":
			uplink = c
		}
	}
	if sensor.Verdict != Warn || !strings.Contains(sensor.Detail, "12 sampling instants missed") {
		t.Errorf("sensor check %+v", sensor)
	}
	if uplink.Verdict != Fail || !strings.Contains(uplink.Detail, "next attempt ") || !strings.Contains(uplink.Detail, "3 attempts") {
		t.Errorf("uplink check %+v", uplink)
	}
}
