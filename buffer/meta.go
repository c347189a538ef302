package buffer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FormatVersion is the version of the buffer file format this build
// writes. It is kept in the file's bookkeeping (meta key "format"; a file
// without it is version 1). Every change of what the file holds bumps it,
// and every earlier version is still read and drained: Open upgrades an
// older file in place (Inspect never does); testdata keeps a file of each
// version, written by the code of its time (v1-983176d, v2, v3, v4;
// generators in testdata/genv1 to genv5). A new version adds its own.
//
//	1  (commit 983176d) data buckets "d"+class holding records (record.go),
//	   8-byte big-endian sequence keys; bucket "m" with format, epoch,
//	   created, live, count, low, dropped, dropped/<key> and salvage.
//	2  adds meta key "corrupt" (undecodable records removed), and class
//	   ClassReport holds at most one unsent record. Upgrading from 1 only
//	   rewrites the version: records stay as they are, and the first report
//	   stored replaces every older one.
//	3  sequence numbers are handed out at Append and records may be read
//	   and acknowledged before their commit (one acknowledged in time is
//	   never written): meta key "reserved" holds the first number not yet
//	   durably reserved (the bucket sequence of "m" stays the highest number
//	   handed out as of the last commit), and a file without it continues at
//	   sequence+1. New records have record format 2 (record.go): a flags
//	   byte announcing optional fields, room for what later versions stamp
//	   on a record. Records of format 1 stay readable; upgrading from 2 only
//	   rewrites the version.
//	4  records may carry optional field bit 0, the boot stamp (BootStamp,
//	   record.go): readings taken while the wall clock was not trusted keep
//	   the boot they were taken in and the time since it, so that their
//	   time can be corrected later. Records without it are written as
//	   record format 1, as before. Upgrading from 3 only rewrites the
//	   version; a build of format 3 refuses a file of format 4 rather than
//	   send stamped readings with a time it cannot know is wrong.
//	5  per-output progress (progress.go), with two or more outputs (MQTT
//	   and Sentilo): meta "progress/<output>" (every record below it that
//	   is still stored has been acknowledged by that output), meta
//	   "odropped/<output>" (records the bound dropped before that output
//	   had them) and a top-level bucket "o<output>" holding one empty
//	   value per record above the mark that the output acknowledged and
//	   another did not. A record is deleted once every configured output
//	   has acknowledged it. Class ClassZone (zone counts, ranked with
//	   occupancy by the bound) may appear. With one output nothing of this
//	   is written; upgrading from 4 only rewrites the version.
//
// The per-output marks are written in the commits that acks already
// cause; an output's acknowledgements wait in memory only until the next
// commit, like Ack's deletes.
//
// Meta keys "state/<key>" (SetState, state.go) may appear in a file of any
// version: a file without them has no kept state, and a build that does not
// know them ignores them, so they bump no version.
const FormatVersion = 5

// upgrades[v] turns the bookkeeping of version v into version v+1 inside
// the transaction of Open.
var upgrades = map[uint64]func(m *bolt.Bucket) error{
	1: func(*bolt.Bucket) error { return nil }, // "corrupt" absent reads as 0
	2: func(*bolt.Bucket) error { return nil }, // "reserved" absent: continue at sequence+1
	3: func(*bolt.Bucket) error { return nil }, // records without a boot stamp read as before
	4: func(*bolt.Bucket) error { return nil }, // no output marks: records wait for every output
}

var (
	bucketMeta  = []byte("m")
	keyFormat   = []byte("format")
	keyEpoch    = []byte("epoch")
	keyCreated  = []byte("created")
	keyLive     = []byte("live")
	keyCount    = []byte("count")
	keyLow      = []byte("low")
	keyDropped  = []byte("dropped")
	keyCorrupt  = []byte("corrupt")
	keySalvage  = []byte("salvage")
	keyReserved = []byte("reserved")
	dropPrefix  = "dropped/"
	dataPrefix  = byte('d')
	errNotQueue = errors.New("not a cityedge buffer file")
)

// metaFacts is the bookkeeping of a file as Stats shows it.
type metaFacts struct {
	format       uint64
	epoch        uint64
	dropped      map[string]uint64
	droppedTotal uint64
	corrupt      uint64
	salvage      *SalvageReport
}

// readMeta reads the bookkeeping without changing anything.
func readMeta(m *bolt.Bucket) metaFacts {
	f := metaFacts{
		format:       max(getU64(m, keyFormat), 1),
		epoch:        getU64(m, keyEpoch),
		droppedTotal: getU64(m, keyDropped),
		corrupt:      getU64(m, keyCorrupt),
		dropped:      map[string]uint64{},
	}
	if js := m.Get(keySalvage); js != nil {
		var r SalvageReport
		if json.Unmarshal(js, &r) == nil {
			f.salvage = &r
		}
	}
	c := m.Cursor()
	for k, v := c.Seek([]byte(dropPrefix)); k != nil && bytes.HasPrefix(k, []byte(dropPrefix)); k, v = c.Next() {
		if len(v) == 8 {
			f.dropped[string(k[len(dropPrefix):])] = binary.BigEndian.Uint64(v)
		}
	}
	return f
}

// checkFormat says whether this build can read a file of version v.
func checkFormat(v uint64) error {
	if v > FormatVersion {
		return fmt.Errorf("%w: format %d is newer than this build's %d", errDamaged, v, FormatVersion)
	}
	return nil
}

// upgrade brings the bookkeeping of an older file to FormatVersion.
func upgrade(m *bolt.Bucket, from uint64) error {
	for v := from; v < FormatVersion; v++ {
		if err := upgrades[v](m); err != nil {
			return fmt.Errorf("upgrade format %d to %d: %w", v, v+1, err)
		}
	}
	return m.Put(keyFormat, u64(FormatVersion))
}

// initMeta writes the bookkeeping of a new sequence space starting after base.
func initMeta(m *bolt.Bucket, base uint64, now time.Time) error {
	if err := m.SetSequence(base); err != nil {
		return err
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyFormat, FormatVersion},
		{keyEpoch, base},
		{keyCreated, uint64(now.Unix())},
		{keyLive, 0},
		{keyCount, 0},
		{keyLow, base + 1},
		{keyReserved, base + 1},
	} {
		if err := m.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// clockSeqBase is where a new sequence space starts: the current time in
// Unix microseconds, so it lies above any earlier space that handed out
// fewer than a million numbers per second, and never below seqFloor.
func clockSeqBase(now time.Time) uint64 {
	return max(uint64(max(now.UnixMicro(), 0)), seqFloor)
}

// isData reports whether a top-level bucket name is a data bucket, and of
// which class.
func isData(name []byte) (Class, bool) {
	if len(name) == 2 && name[0] == dataPrefix {
		return name[1], true
	}
	return 0, false
}

func dataName(c Class) []byte { return []byte{dataPrefix, c} }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
