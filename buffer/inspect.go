package buffer

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Inspection is what Inspect learned about a buffer file.
type Inspection struct {
	Path      string
	FileBytes int64
	Mode      os.FileMode
	// Locked: a running agent holds the file. Nothing else is filled in;
	// ask the agent itself (its status) for the live figures.
	Locked bool
	// Damaged says what is wrong with a file the agent would salvage at its
	// next start, and NextStart what it will do then; "" for a sound file.
	Damaged   string
	NextStart string
	// Recoverable counts the intact records a salvage would keep.
	Recoverable uint64

	Format       uint64
	Epoch        uint64
	Count        uint64 // records queued (the backlog)
	Bytes        int64  // their live bytes
	OldestSeq    uint64
	OldestTime   time.Time
	NextSeq      uint64
	Dropped      map[string]uint64
	DroppedTotal uint64
	Corrupt      uint64
	Salvage      *SalvageReport
}

// Inspect reads the buffer file at path without changing it, for
// --diagnose: bbolt's read-only mode under a shared lock, after the same
// bounds-checked walk Open does; no compaction, salvage, trimming or format
// upgrade, and nothing created. If a running agent holds the file, Inspect
// neither waits nor reads it and reports Locked. A damaged file is reported
// in Damaged and NextStart (what the agent will do with it), not as an
// error; so is an interrupted salvage. Errors are for a file that is
// missing (wrapping os.ErrNotExist), unreadable or not a buffer file.
func Inspect(path string) (Inspection, error) {
	in := Inspection{Path: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(path + salvagedSuffix); serr == nil {
			in.NextStart = "a salvage was interrupted: the agent puts its complete copy " + path + salvagedSuffix + " in place at its next start"
			return in, nil
		}
	}
	if err != nil {
		return in, fmt.Errorf("buffer: inspect %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return in, fmt.Errorf("buffer: inspect %s: %w", path, err)
	}
	in.FileBytes, in.Mode = fi.Size(), fi.Mode()
	locked, err := lockShared(f)
	if err != nil {
		return in, fmt.Errorf("buffer: inspect %s: %w", path, err)
	}
	if locked {
		in.Locked = true
		return in, nil
	}
	if in.FileBytes == 0 {
		in.NextStart = "empty: the agent starts a new buffer in it"
		return in, nil
	}
	if reason := checkFile(f, in.FileBytes); reason != nil {
		in.damaged(f, reason)
		return in, nil
	}
	err = in.read(path, f)
	if errors.Is(err, errDamaged) {
		in.damaged(f, err)
		return in, nil
	}
	return in, err
}

// damaged fills in what a salvage at the next start will do.
func (in *Inspection) damaged(f *os.File, reason error) {
	facts := findLayout(f, in.FileBytes)
	seen := map[uint64]bool{}
	scanPages(f, in.FileBytes, facts.pageSize, func(k, v []byte, bucket bool) {
		if seq := keySeq(k); !bucket && seq >= facts.low && seq != 0 && !seen[seq] {
			if _, err := decodeRecord(v); err == nil {
				seen[seq] = true
			}
		}
	})
	in.Damaged = reason.Error()
	in.Recoverable = uint64(len(seen))
	in.NextStart = fmt.Sprintf("the agent will salvage it at its next start: the %d intact records go into a new %s, "+
		"the damaged file is kept as %s.corrupt-<UTC time>", in.Recoverable, in.Path, in.Path)
	in.Epoch, in.Dropped, in.DroppedTotal, in.Corrupt = facts.epoch, facts.drops, facts.dropped, facts.corrupt
}

// read opens the checked file with bbolt in read-only mode and reads its
// bookkeeping.
func (in *Inspection) read(path string, f *os.File) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked reading it: %v", errDamaged, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Millisecond,
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return os.Open(path) }})
	if err != nil {
		return fmt.Errorf("buffer: inspect %s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if _, err := topLevel(tx); err != nil {
			return fmt.Errorf("buffer: inspect %s: %w", path, err)
		}
		m := tx.Bucket(bucketMeta)
		if m == nil {
			in.NextStart = "no bookkeeping yet: the agent starts a new buffer in it"
			return nil
		}
		facts := readMeta(m)
		if err := checkFormat(facts.format); err != nil {
			return err
		}
		var r commitResult
		snapshot(tx, m, &r)
		in.Format, in.Epoch, in.Salvage = facts.format, facts.epoch, facts.salvage
		in.Dropped, in.DroppedTotal, in.Corrupt = facts.dropped, facts.droppedTotal, facts.corrupt
		in.Count, in.Bytes, in.NextSeq, in.OldestSeq, in.OldestTime = r.count, r.live, r.nextSeq, r.oldestSeq, r.oldestTime
		return nil
	})
}
