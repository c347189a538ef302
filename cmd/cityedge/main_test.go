package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLoggerUnderJournald: under systemd (JOURNAL_STREAM set) log lines carry
// no timestamp of their own, since the journal adds one; elsewhere they do.
func TestLoggerUnderJournald(t *testing.T) {
	for _, c := range []struct {
		journal  string
		wantTime bool
	}{{"", true}, {"8:12345", false}} {
		t.Setenv("JOURNAL_STREAM", c.journal)
		var buf bytes.Buffer
		newLogger(&buf, slog.LevelInfo).Info("hello", "sensor", "air-1")
		line := buf.String()
		if got := strings.HasPrefix(line, "time="); got != c.wantTime || !strings.Contains(line, `msg=hello sensor=air-1`) {
			t.Errorf("JOURNAL_STREAM=%q: %q", c.journal, line)
		}
	}
}
