// Package buffer is the gateway's durable store-and-forward queue: an
// append-only FIFO of opaque records in one bbolt file. The sampler appends
// encoded readings, the uplink reads them in batches and acknowledges them
// after the broker's PUBACK. It knows bytes, not sensors.
//
// Durability. A record is durable when Append returns nil: it is committed
// in a bbolt transaction and fsynced, or the reader acknowledged it (Ack)
// before its commit fell due, in which case it is never written. A record
// is readable at once (ReadAfter), before its commit. Its commit falls due
// Options.CommitInterval after its Append (OccupancyWindow for an
// occupancy change) unless it was acknowledged by then, and takes every
// other record then waiting (group commit), so hundreds of sensors cost a
// few fsyncs per second, and with a reader that keeps up (a broker that is
// up) almost nothing is written at all. On a power cut, what is lost is at
// most the records of the last interval that nobody had acknowledged, and
// their callers had not been told they were stored.
//
// Order and sequence numbers. Every record gets a sequence number at
// Append, unique and increasing per gateway, that survives restarts.
// ReadAfter returns records in sequence order. A record may be read before
// its commit only when its number is below the durable reservation (meta
// "reserved", extended 8,192 at a time in commits that happen anyway), so
// a number a reader has seen is never handed out again: after a crash the
// rest of the reserved block is skipped (logged), and a clean Close gives
// it back. When a file is replaced (a new file, or a damaged one
// salvaged) a new sequence space starts above both the largest number seen
// in the old file and the current time in Unix microseconds (never below
// 2025-01-01), so numbers never repeat even if the old file is lost and a
// receiver can always tell a new space from a replay. Its first value is
// the file's Epoch. All numbers stay below 2^53 so JSON consumers keep them
// exact. Receivers drop repeats on (gateway, seq) and see gaps as losses.
//
// Acknowledgement. Ack deletes records; the delete is committed with the
// next group (within CommitInterval, or at once when thousands of acks are
// pending, as while a backlog drains), and until then ReadAfter skips them.
// After a crash, the acks of the last interval are lost and those records
// are sent again: delivery is at-least-once.
//
// Bound. Options.MaxBytes bounds the file. Records are counted as stored
// (value, 8-byte key and bbolt's 16-byte element header) in a counter
// updated in the same transaction; when a commit would exceed the share of
// MaxBytes that records may use (about 80 %, the rest being page overhead,
// pages freed by the commit and growth steps) records are dropped by class
// (dropOrder, the one drop policy): environmental readings and the drop
// report first, oldest first, occupancy changes (ClassOccupancy) last. Every
// drop is counted per key, persistently, and logged (rate-limited). The
// agent reports the counters through PutReport, which keeps at most one
// unsent report, so reports never pile up and push out occupancy. Freed
// pages are reused, so the file stays within MaxBytes plus one page. When
// the queue drains and the file is mostly free (after a fast drain, once it
// has been quiet for a second; and at Open when at least half is free), it
// is compacted by copying into a new file and renaming it over the old one.
//
// Format. The file carries its format version (FormatVersion). Open reads
// every earlier version and upgrades it in place; Inspect reads a file
// without writing anything, for --diagnose.
//
// Damaged files. Open never hands bbolt a file it has not checked: it walks
// the whole page tree once with bounds-checked reads (bbolt trusts its file,
// and a damaged page can crash the process from a goroutine nobody can
// recover, or with SIGBUS past the end of a truncated file). A file that
// fails — truncated, overwritten, a bad meta page — is salvaged: every
// intact record (each carries a CRC-32C) at or above the old low-water mark
// is copied with its sequence number into a fresh file, the drop counters
// are carried over, the damaged file is kept as <path>.corrupt-<UTC time>
// (never deleted), and the event is logged at Error and reported in
// Stats().Salvage. If bbolt panics on the file later while running, the
// queue salvages it the same way without a restart. Records that were acked
// shortly before the damage may come back; receivers drop them by sequence
// number. A record that cannot be decoded in a sound file (its checksum
// fails) is skipped, logged, deleted and counted in Stats().Corrupt, so
// every gap in the sequence numbers is explained.
//
// Disk errors. When a commit fails (disk full, I/O error) Append keeps
// accepting into a bounded in-memory ring (Options.MemoryBytes, oldest
// dropped and counted) and returns an error wrapping ErrNotDurable; the
// error shows in Stats().DiskError and the log. The ring is written, in
// order, as soon as the disk accepts writes again (retried with backoff up
// to 30 s). A failed commit leaves the file as it was.
//
// Locking and ownership. The file is locked; a second process gets
// ErrLocked after Options.LockTimeout. Every file the queue creates next to
// it (the file itself, a compaction's or a salvage's new file) belongs to
// the owner of its directory when the queue runs as root, so a run as root
// never locks the service user out.
package buffer
