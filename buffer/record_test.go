package buffer

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"
)

// TestRecordOptionalFields: a record of record format 2 (flags and optional
// fields, room a later version uses) decodes with its fields skipped, and
// damaged field lengths are refused, not read past.
func TestRecordOptionalFields(t *testing.T) {
	seal := func(b []byte) []byte { return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)) }
	at := time.UnixMilli(1764064800000).UTC()
	build := func(flags byte, fields ...[]byte) []byte {
		b := []byte{recordFormat, ClassOccupancy, flags}
		b = binary.AppendUvarint(b, uint64(at.UnixMilli()))
		for _, f := range fields {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
		b = append(b, 3, 'b', 'a', 'y')
		return seal(append(b, "payload"...))
	}
	for _, tc := range []struct {
		name string
		v    []byte
		ok   bool
	}{
		{"format 1 as written", encodeRecord(nil, ClassOccupancy, at, "bay", []byte("payload")), true},
		{"format 2, no fields", build(0), true},
		{"format 2, one field", build(1, []byte{7, 8, 9}), true},
		{"format 2, two fields", build(0b101, []byte{1}, []byte{}), true},
		{"field length past the end", seal([]byte{recordFormat, 0, 1, 1, 200, 1, 'k', 'x'}), false},
		{"unknown record format", seal([]byte{9, 0, 0, 1, 1, 'k', 'x'}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := decodeRecord(tc.v)
			if !tc.ok {
				if err == nil {
					t.Fatalf("decoded %+v, want an error", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(r.key) != "bay" || string(r.data) != "payload" || !r.time.Equal(at) || r.class != ClassOccupancy {
				t.Errorf("decoded key %q data %q time %v class %d", r.key, r.data, r.time, r.class)
			}
		})
	}
}
