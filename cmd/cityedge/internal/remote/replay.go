package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/atomicfile"
	"github.com/jonboulle/clockwork"
)

// ReplayFile is the replay store's file name under the state directory.
const ReplayFile = "remote-jti.json"

// DefaultReplayEntries bounds the replay store. Only commands with a valid
// signature enter it, and each stays at most exp + Retain, so a city that
// signs fewer than this many commands for one gateway per window never
// meets the bound.
const DefaultReplayEntries = 1024

// ErrReplayed reports a jti that was already accepted.
var ErrReplayed = errors.New("jti already accepted")

// ErrReplayFull reports a replay store at its bound: the command is not
// executed, since its jti could not be remembered.
var ErrReplayFull = errors.New("replay store full")

// ReplayOptions configure a [ReplayStore].
type ReplayOptions struct {
	Clock clockwork.Clock // nil: the real clock
	// MaxEntries bounds the store; 0 means DefaultReplayEntries.
	MaxEntries int
	// Retain keeps an entry this long past its exp, so that a clock
	// stepped back (by up to Retain) cannot revive a command. The agent
	// passes remote.max_age.
	Retain time.Duration
}

// ReplayStore remembers accepted command ids until they expire, in a small
// JSON file rewritten atomically (temporary file, fsync, rename, fsync of the
// directory) on every accepted command.
type ReplayStore struct {
	path string
	opts ReplayOptions

	mu      sync.Mutex
	entries map[string]int64 // jti → exp, Unix seconds
}

type replayFile struct {
	Version int              `json:"version"`
	JTI     map[string]int64 `json:"jti"`
}

// OpenReplayStore loads <dir>/remote-jti.json (a missing file is an empty
// store) and drops expired entries. A damaged file is an error naming it:
// accepting commands without knowing which ones ran would allow replays.
func OpenReplayStore(dir string, opts ReplayOptions) (*ReplayStore, error) {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultReplayEntries
	}
	s := &ReplayStore{path: filepath.Join(dir, ReplayFile), opts: opts, entries: make(map[string]int64)}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("remote: replay store: %w", err)
	}
	var f replayFile
	if err := strictUnmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("remote: replay store %s: %w", s.path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("remote: replay store %s: version %d, want 1", s.path, f.Version)
	}
	for jti, exp := range f.JTI {
		s.entries[jti] = exp
	}
	s.prune()
	return s, nil
}

// Path returns the store's file.
func (s *ReplayStore) Path() string { return s.path }

// Len returns the number of remembered ids.
func (s *ReplayStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Seen reports whether jti was accepted and is still remembered.
func (s *ReplayStore) Seen(jti string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.entries[jti]
	return ok
}

// Accept records jti, valid until exp, and writes the store to disk before
// it returns. It returns ErrReplayed when jti is remembered, ErrReplayFull
// at the bound, or the write error; in each case nothing is recorded.
func (s *ReplayStore) Accept(jti string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[jti]; ok {
		return ErrReplayed
	}
	s.prune()
	if len(s.entries) >= s.opts.MaxEntries {
		return fmt.Errorf("%w (%d entries)", ErrReplayFull, len(s.entries))
	}
	s.entries[jti] = exp.Unix()
	if err := s.save(); err != nil {
		delete(s.entries, jti)
		return err
	}
	return nil
}

func (s *ReplayStore) prune() {
	now := s.opts.Clock.Now()
	for jti, exp := range s.entries {
		if !now.Before(time.Unix(exp, 0).Add(s.opts.Retain)) {
			delete(s.entries, jti)
		}
	}
}

func (s *ReplayStore) save() error {
	data, err := json.Marshal(replayFile{Version: 1, JTI: s.entries})
	if err != nil {
		return fmt.Errorf("remote: replay store: %w", err)
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("remote: replay store: %w", err)
	}
	return nil
}
