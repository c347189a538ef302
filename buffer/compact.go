package buffer

import (
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// shouldCompact: compact when the file is big and mostly free. The copy
// costs what is live, so the ratio is strict while running and looser at
// Open, where nothing waits.
func shouldCompact(fileBytes, live int64, ratio int64) bool {
	const minFile = 4 << 20
	used := int64(float64(live)/fillPercent) + 64<<10
	return fileBytes >= minFile && used*ratio <= fileBytes
}

// compactIfQuiet runs a compaction that a fast drain postponed, once the
// drain has been quiet for drainQuiet; until then it shortens *wait to that
// moment. It reports whether it ran (then the committer looks for work
// again).
func (q *Queue) compactIfQuiet(wait *time.Duration) bool {
	if q.compactAt.IsZero() {
		return false
	}
	if d := q.clock.Until(q.compactAt); d > 0 {
		if *wait == 0 || d < *wait { // 0: nothing else to wait for
			*wait = d
		}
		return false
	}
	q.compactAt = time.Time{}
	q.mu.Lock()
	live := q.st.Bytes
	q.mu.Unlock()
	if shouldCompact(q.fileBytes(), live, 16) {
		q.compact("drained")
	}
	return true
}

// compact copies the live data into a new file and swaps it in (bbolt
// never shrinks a file). Only the committer calls it.
func (q *Queue) compact(why string) {
	before := q.fileBytes()
	tmp := q.path + compactSuffix
	_ = os.Remove(tmp)
	failed := func(step string, err error) {
		q.log.Warn("buffer: compaction failed; keeping the current file", "file", q.path, "step", step, "err", err)
		_ = os.Remove(tmp)
	}
	opts := q.boltOptions(q.opts.LockTimeout)
	opts.MaxSize = 0 // the copy is never larger than the source
	dst, err := bolt.Open(tmp, 0o600, opts)
	if err != nil {
		failed("create", err)
		return
	}
	dst.AllocSize = q.allocStep
	if err := bolt.Compact(dst, q.db, 1<<20); err != nil {
		_ = dst.Close()
		failed("copy", err)
		return
	}
	dst.MaxSize = q.hardMax
	// While the old file is still open and locked, the new one (locked by
	// dst) takes its name: no moment without a locked file at path.
	if err := os.Rename(tmp, q.path); err != nil {
		_ = dst.Close()
		failed("rename", err)
		return
	}
	if err := syncDir(filepath.Dir(q.path)); err != nil {
		q.log.Warn("buffer: sync directory after compaction", "file", q.path, "err", err)
	}
	q.dbMu.Lock()
	old := q.db
	q.db = dst
	q.dbMu.Unlock()
	_ = old.Close()
	q.log.Info("buffer: compacted", "file", q.path, "why", why, "before_bytes", before, "after_bytes", q.fileBytes())
}
