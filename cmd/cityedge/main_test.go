package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
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

// TestDescribeBuild: without -ldflags the version, revision, commit time and
// the modified flag come from the build info; -ldflags values win.
func TestDescribeBuild(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2025-11-25T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	cases := []struct {
		name, ver, rev, date string
		bi                   *debug.BuildInfo
		want                 string
	}{
		{"go build", "dev", "", "", bi, "cityedge v1.4.0 (commit 0123abcd-modified, built 2025-11-25T10:00:00Z,"},
		{"devel version", "dev", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: bi.Settings[:2]},
			"cityedge dev (commit 0123abcd, built 2025-11-25T10:00:00Z,"},
		{"ldflags", "v2.0.0", "feedbeef", "2026-01-01T00:00:00Z", bi, "cityedge v2.0.0 (commit feedbeef, built 2026-01-01T00:00:00Z,"},
		{"nothing known", "dev", "", "", nil, "cityedge dev (commit unknown, built unknown,"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := describeBuild(c.ver, c.rev, c.date, c.bi); !strings.HasPrefix(got, c.want) {
				t.Errorf("got %q, want prefix %q", got, c.want)
			}
		})
	}
	// This test binary was built by go test: it has build info of its own.
	if bi, ok := debug.ReadBuildInfo(); !ok || bi.Main.Path == "" {
		t.Errorf("no build info in a Go binary")
	}
}
