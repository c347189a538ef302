package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestReplayStoreFile(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(testNow)
	s, err := OpenReplayStore(dir, ReplayOptions{Clock: clock, Retain: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Accept("a", testNow.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Accept("b", testNow.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left temporary files: %v", entries)
	}
	// Reopened after "a" expired (exp + retain): only "b" is loaded.
	clock.Advance(2 * time.Minute)
	s2, err := OpenReplayStore(dir, ReplayOptions{Clock: clock, Retain: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Seen("a") || !s2.Seen("b") || s2.Len() != 1 {
		t.Fatalf("reloaded: a %v b %v len %d", s2.Seen("a"), s2.Seen("b"), s2.Len())
	}
}

func TestReplayStoreDamaged(t *testing.T) {
	for name, data := range map[string]string{
		"truncated":     `{"version":1,"jti":{"a":17`,
		"wrong version": `{"version":2,"jti":{}}`,
		"not an object": `[]`,
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, ReplayFile)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenReplayStore(dir, ReplayOptions{}); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming %s", name, err, path)
		}
	}
}

func TestReplayStoreUnwritable(t *testing.T) {
	// A removed directory fails for root too (a read-only mode would not).
	dir := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := OpenReplayStore(dir, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Accept("a", time.Now().Add(time.Minute)); err == nil {
		t.Fatal("accepted without persisting")
	}
	if s.Seen("a") {
		t.Fatal("remembered in memory although not persisted")
	}
}
