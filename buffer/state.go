package buffer

import (
	"bytes"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"
)

// Durable state beside the records: small values the agent keeps across a
// restart (a parking detector's learned baseline and state). They live in
// the bookkeeping bucket under "state/<key>"; a file without them (every
// earlier format) simply has none, and a build that does not know them
// ignores them, so they need no format version of their own. A salvage
// starts without them (they are learned again).
const (
	statePrefix = "state/"
	// MaxStateKey and MaxStateValue bound one entry of SetState.
	MaxStateKey   = 128
	MaxStateValue = 64 << 10
)

// SetState keeps val under key, durably: it is written with the next commit
// (at once if no other write is pending), and Close writes what is pending.
// State returns it from now on, in this run and after a restart. A nil or
// empty val removes the key.
func (q *Queue) SetState(key string, val []byte) error {
	if key == "" || len(key) > MaxStateKey {
		return fmt.Errorf("buffer: state key %.40q must be 1 to %d bytes", key, MaxStateKey)
	}
	if len(val) > MaxStateValue {
		return fmt.Errorf("buffer: state %q is %d bytes, more than %d", key, len(val), MaxStateValue)
	}
	val = bytes.Clone(val)
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	if q.state == nil {
		q.state = map[string][]byte{}
	}
	if q.statePending == nil {
		q.statePending = map[string][]byte{}
	}
	q.state[key] = val
	q.statePending[key] = val
	q.mu.Unlock()
	q.kick()
	return nil
}

// State returns the value SetState last kept under key (nil: none).
func (q *Queue) State(key string) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	return bytes.Clone(q.state[key])
}

// loadState reads the kept state at Open.
func (q *Queue) loadState() error {
	st := map[string][]byte{}
	err := q.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil
		}
		c := m.Cursor()
		for k, v := c.Seek([]byte(statePrefix)); k != nil && bytes.HasPrefix(k, []byte(statePrefix)); k, v = c.Next() {
			st[string(k[len(statePrefix):])] = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("buffer: read kept state of %s: %w", q.path, err)
	}
	q.state = st
	return nil
}

// takeStateLocked hands the pending state to a commit.
func (q *Queue) takeStateLocked() map[string][]byte {
	st := q.statePending
	q.statePending = nil
	return st
}

// restoreStateLocked puts back the state of a failed commit, unless a newer
// value arrived meanwhile.
func (q *Queue) restoreStateLocked(st map[string][]byte) {
	if len(st) == 0 {
		return
	}
	if q.statePending == nil {
		q.statePending = map[string][]byte{}
	}
	for k, v := range maps.All(st) {
		if _, newer := q.statePending[k]; !newer {
			q.statePending[k] = v
		}
	}
}

// putState writes state into the bookkeeping of a commit.
func (t *txn) putState(st map[string][]byte) error {
	for k, v := range st {
		name := []byte(statePrefix + k)
		var err error
		if len(v) == 0 {
			err = t.m.Delete(name)
		} else {
			err = t.m.Put(name, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// StateWithPrefix returns every value SetState keeps under a key starting
// with prefix, by key (the rest of the key after prefix).
func (q *Queue) StateWithPrefix(prefix string) map[string][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range q.state {
		if len(v) > 0 && len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out[k[len(prefix):]] = bytes.Clone(v)
		}
	}
	return out
}
