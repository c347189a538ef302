package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Stored value layout (one bbolt value per record; the bbolt key is the
// 8-byte big-endian sequence number):
//
//	[0]    record format: 1 (no optional fields), 2 (optional fields follow)
//	[1]    class (Class: how the bound ranks it)
//	[2]    record format 2 only: flags, one bit per optional field
//	[..]   uvarint: append time, Unix milliseconds
//	       record format 2 only: the optional fields of the bits set in
//	       flags, lowest bit first, each a uvarint length and that many bytes
//	       uvarint: length of the producer key, then the key bytes
//	       payload bytes (the rest, up to the checksum)
//	[-4:]  CRC-32C (Castagnoli) of everything before it, little-endian
//
// The checksum lets salvage tell a real record from stale or damaged bytes
// when it has to read pages that no valid tree points to any more.
//
// Optional fields are how a record grows without a new layout: a version
// gives a bit its meaning, writes record format 2 for the records that carry
// one, bumps FormatVersion and keeps reading records of format 1. Decoders
// skip the fields of bits they do not know, so a record with a field a
// build does not understand still delivers its payload.
//
//	bit 0  (file format 4) boot stamp, BootStamp: 4 bytes boot id
//	       (little-endian), then uvarint milliseconds since that boot.
//	       Present only on records whose wall time was not trusted when
//	       they were taken; its absence is the "trusted" flag.
//
// A record without optional fields is written as format 1: a byte per
// record is 5 % of the records that fit in a page at the bound. A stamped
// record costs 2 + 4 + (3 to 5) bytes more: flags, field length, boot id,
// milliseconds (3 bytes up to 34 minutes of uptime, 4 up to 3 days, 5 up to
// 1 year); a gateway with a synchronised clock writes none.
const (
	recordFormatV1 = 1
	recordFormat   = 2 // with a flags byte
	flagBoot       = 1 // optional field bit 0: the boot stamp
	bootFieldMax   = 4 + 10
	crcSize        = 4
	maxKeyLen      = 255
	minRecordBytes = 2 + 1 + 1 + crcSize // version, priority, time, key length, crc
	maxMillis      = 1 << 53             // times are clamped to [1970, year 285,000]

	// elemOverhead is what bbolt spends per record besides the value: a
	// 16-byte leaf element header and the 8-byte key. It is part of the
	// live-byte count so that the count tracks what the records occupy in
	// the file.
	elemOverhead = 16 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadRecord = errors.New("buffer: malformed record")

// BootStamp says when a record's content was taken on the monotonic clock
// of the boot it was taken in. The agent stamps the readings whose wall
// time it could not trust yet, so that it can correct their time once it
// can (see the agent's clock rule); the buffer only keeps it.
type BootStamp struct {
	ID    uint32        // the boot (a 32-bit fold of the kernel's boot id)
	Since time.Duration // time since that boot; kept to the millisecond, never negative
}

// record is a decoded stored value. Key and Data alias the decoded buffer.
type record struct {
	class Class
	time  time.Time
	key   []byte
	data  []byte
	boot  *BootStamp
}

func bootMillis(b *BootStamp) uint64 { return uint64(min(max(b.Since.Milliseconds(), 0), maxMillis)) }

// encodedLen returns the stored size of a record's value.
func encodedLen(key string, data []byte, t time.Time, boot *BootStamp) int {
	n := 2 + uvarintLen(uint64(min(max(t.UnixMilli(), 0), maxMillis))) + uvarintLen(uint64(len(key))) + len(key) + len(data) + crcSize
	if boot != nil {
		n += 1 + 1 + 4 + uvarintLen(bootMillis(boot))
	}
	return n
}

// encodeRecord appends the stored form of a record to dst. It is the only
// encoder of records; decodeRecord is the only decoder. boot may be nil.
func encodeRecord(dst []byte, class Class, t time.Time, key string, data []byte, boot *BootStamp) []byte {
	start := len(dst)
	if boot == nil {
		dst = append(dst, recordFormatV1, class)
	} else {
		dst = append(dst, recordFormat, class, flagBoot)
	}
	ms := min(max(t.UnixMilli(), 0), maxMillis)
	dst = binary.AppendUvarint(dst, uint64(ms))
	if boot != nil {
		bm := bootMillis(boot)
		dst = append(dst, byte(4+uvarintLen(bm)))
		dst = binary.LittleEndian.AppendUint32(dst, boot.ID)
		dst = binary.AppendUvarint(dst, bm)
	}
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = append(dst, data...)
	sum := crc32.Checksum(dst[start:], castagnoli)
	return binary.LittleEndian.AppendUint32(dst, sum)
}

// decodeRecord parses a stored value. The returned slices alias v.
func decodeRecord(v []byte) (record, error) {
	var r record
	if len(v) < minRecordBytes {
		return r, fmt.Errorf("%w: %d bytes is shorter than the smallest record", errBadRecord, len(v))
	}
	body := v[:len(v)-crcSize]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(v[len(v)-crcSize:]); got != want {
		return r, fmt.Errorf("%w: checksum %08x, want %08x", errBadRecord, got, want)
	}
	var flags byte
	rest := body[2:]
	switch body[0] {
	case recordFormatV1:
	case recordFormat:
		flags, rest = body[2], body[3:]
	default:
		return r, fmt.Errorf("%w: record format %d, want %d or %d", errBadRecord, body[0], recordFormatV1, recordFormat)
	}
	r.class = body[1]
	ms, n := binary.Uvarint(rest)
	if n <= 0 || ms > maxMillis {
		return r, fmt.Errorf("%w: bad time field", errBadRecord)
	}
	rest = rest[n:]
	for ; flags != 0; flags &= flags - 1 {
		flen, n := binary.Uvarint(rest)
		if n <= 0 || flen > uint64(len(rest)-n) {
			return r, fmt.Errorf("%w: bad optional field", errBadRecord)
		}
		field := rest[n : n+int(flen)]
		rest = rest[n+int(flen):]
		if flags&-flags != flagBoot {
			continue // an optional field this version has no use for
		}
		bm, k := binary.Uvarint(field[min(4, len(field)):])
		if len(field) < 5 || len(field) > bootFieldMax || k != len(field)-4 || bm > maxMillis {
			return r, fmt.Errorf("%w: bad boot stamp", errBadRecord)
		}
		r.boot = &BootStamp{ID: binary.LittleEndian.Uint32(field), Since: time.Duration(bm) * time.Millisecond}
	}
	klen, n := binary.Uvarint(rest)
	if n <= 0 || klen > maxKeyLen || klen > uint64(len(rest)-n) {
		return r, fmt.Errorf("%w: bad key length", errBadRecord)
	}
	rest = rest[n:]
	r.time = time.UnixMilli(int64(ms)).UTC()
	r.key = rest[:klen:klen]
	r.data = rest[klen:]
	return r, nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// seqKey is the bbolt key of a sequence number.
func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// keySeq decodes a bbolt key; 0 (never a valid sequence) for a key that is
// not 8 bytes long.
func keySeq(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}
