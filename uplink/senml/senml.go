// Package senml is cityedge's wire format: SenML JSON packs (RFC 8428) built
// from readings held in the buffer, plus the compact binary form in which a
// reading waits in the buffer until it is sent.
//
// A pack carries the agent id as base name and the time of its first record
// as base time; every record names <sensor>/<quantity>, and carries "seq", the
// reading's buffer sequence number, so receivers drop repeats on (agent id,
// seq) and see gaps. "seq" is a SenML extension field; it does not end in "_",
// so receivers that do not know it may ignore it (RFC 8428 section 4.4).
// So is "tq", time quality, on readings whose time the gateway could not
// take from a trusted clock: "corrected" (derived from the boot-time offset
// once the clock was trusted) or "unsynced" (the gateway's own time, never
// verified).
//
// No SenML library is available to us; this encoder is ours and small on
// purpose. It is checked by round trips through encoding/json.
package senml

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cityedge/cityedge/drivers"
)

// Item is a stored reading with its buffer sequence number.
type Item struct {
	Seq  uint64
	Data []byte // AppendReading's output
	// Time, when not zero, replaces the stored reading's time (a time the
	// agent corrected), and Mark, when not empty, is sent as the extension
	// label "tq" (time quality) on each of its records.
	Time time.Time
	Mark string
}

const formatV1 = 1

// value kinds in the stored form
const (
	kindNum   = 0 // float64, 8 bytes
	kindFalse = 1
	kindTrue  = 2
	kindNum32 = 3 // float32, 4 bytes: a value from a float32 source (Value.Float32), sent at that precision
)

var errShort = errors.New("senml: stored reading truncated")

// AppendReading appends the stored form of r to dst. It refuses readings that
// could not be sent as valid SenML: no values, NaN or infinite numbers, or
// names with characters outside SenML's name alphabet.
func AppendReading(dst []byte, r drivers.Reading) ([]byte, error) {
	if len(r.Values) == 0 {
		return dst, fmt.Errorf("senml: sensor %q: reading has no values", r.Sensor)
	}
	if err := checkName(r.Sensor); err != nil {
		return dst, fmt.Errorf("senml: sensor %q: %w", r.Sensor, err)
	}
	dst = append(dst, formatV1)
	dst = binary.AppendVarint(dst, r.Time.UnixMilli())
	dst = appendString(dst, r.Sensor)
	dst = binary.AppendUvarint(dst, uint64(len(r.Values)))
	for _, v := range r.Values {
		if err := checkName(v.Quantity); err != nil {
			return dst, fmt.Errorf("senml: sensor %q quantity %q: %w", r.Sensor, v.Quantity, err)
		}
		kind := byte(kindNum)
		switch {
		case v.IsBool && v.Bool:
			kind = kindTrue
		case v.IsBool:
			kind = kindFalse
		case math.IsNaN(v.Num) || math.IsInf(v.Num, 0) || (v.Float32 && math.IsInf(float64(float32(v.Num)), 0)):
			return dst, fmt.Errorf("senml: sensor %q quantity %q: %v is not a number SenML can carry", r.Sensor, v.Quantity, v.Num)
		case v.Float32:
			kind = kindNum32
		}
		dst = append(dst, kind)
		dst = appendString(dst, v.Quantity)
		dst = appendString(dst, v.Unit)
		switch kind {
		case kindNum:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.Num))
		case kindNum32:
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v.Num)))
		}
	}
	return dst, nil
}

// DecodeReading parses the stored form written by AppendReading.
func DecodeReading(b []byte) (drivers.Reading, error) {
	var r drivers.Reading
	if len(b) == 0 || b[0] != formatV1 {
		return r, errors.New("senml: stored reading has an unknown format")
	}
	b = b[1:]
	ms, n := binary.Varint(b)
	if n <= 0 {
		return r, errShort
	}
	r.Time = time.UnixMilli(ms).UTC()
	b = b[n:]
	var err error
	if r.Sensor, b, err = readString(b); err != nil {
		return r, err
	}
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) { // every value takes at least 3 bytes
		return r, errShort
	}
	if count == 0 {
		return r, errors.New("senml: stored reading has no values")
	}
	b = b[n:]
	r.Values = make([]drivers.Value, 0, count)
	for i := uint64(0); i < count; i++ {
		if len(b) < 1 {
			return r, errShort
		}
		var v drivers.Value
		kind := b[0]
		b = b[1:]
		if kind > kindNum32 {
			return r, fmt.Errorf("senml: stored reading has unknown value kind %d", kind)
		}
		if v.Quantity, b, err = readString(b); err != nil {
			return r, err
		}
		if v.Unit, b, err = readString(b); err != nil {
			return r, err
		}
		switch kind {
		case kindNum:
			if len(b) < 8 {
				return r, errShort
			}
			v.Num = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
			if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
				return r, errors.New("senml: stored reading holds a value that is not a number")
			}
		case kindNum32:
			if len(b) < 4 {
				return r, errShort
			}
			v.Num, v.Float32 = float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), true
			b = b[4:]
			if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
				return r, errors.New("senml: stored reading holds a value that is not a number")
			}
		default:
			v.IsBool, v.Bool = true, kind == kindTrue
		}
		r.Values = append(r.Values, v)
	}
	if len(b) != 0 {
		return r, errors.New("senml: stored reading has trailing bytes")
	}
	return r, nil
}

// Pack appends to dst the SenML JSON pack for items, with base name
// baseName + "/" and base time the first reading's time. Items that cannot be
// decoded are skipped and returned in bad, so that one damaged entry never
// blocks delivery of the others; the caller decides what to do with them.
//
// Pack reads the stored form in place and allocates nothing beyond dst's
// growth: it runs for every message while a backlog drains.
func Pack(dst []byte, baseName string, items []Item) (out []byte, bad []uint64) {
	dst = append(dst, '[')
	p := packer{first: true}
	for _, it := range items {
		mark, wasFirst, markBT := len(dst), p.first, p.bt
		var ok bool
		dst, ok = p.appendRecords(dst, baseName, it)
		if !ok {
			dst, p.first, p.bt = dst[:mark], wasFirst, markBT
			p.nNames = 0 // they may point into what was dropped
			bad = append(bad, it.Seq)
		}
	}
	return append(dst, ']'), bad
}

// packer is Pack's state between items. It lives on Pack's stack: nothing
// it holds outlives the call.
type packer struct {
	first bool
	bt    int64
	// names remembers where in dst the escaped name and unit of recent
	// records were written (`"n":"<sensor>/<quantity>","u":"<unit>"`): a
	// drain's readings repeat a few sensors and quantities, and copying
	// the bytes already written is cheaper than escaping them again.
	names  [8]nameRef
	nNames int
	next   int // the entry of names replaced next once all are in use
	// seq holds the decimal text of the last item's sequence number (seqN,
	// in seqLen bytes): the next one is usually one more, and counting up
	// its digits is cheaper than formatting it anew.
	seq    [24]byte
	seqLen int
	seqN   uint64
}

// nameRef is a written name, unit and value key: the stored bytes they
// came from, whether the key is "vb" (a boolean) or "v", and where their
// JSON is in dst.
type nameRef struct {
	sensor, quantity, unit []byte
	boolean                bool
	at, end                int
}

// appendName writes `"n":"<sensor>/<quantity>"`, with a unit
// `,"u":"<unit>"`, and the key of a value of kind (`,"v":` or `,"vb":`),
// copying an earlier record's when they are the same.
func (p *packer) appendName(dst, sensor, quantity, unit []byte, kind byte) []byte {
	boolean := kind == kindTrue || kind == kindFalse
	for _, r := range p.names[:p.nNames] {
		if r.boolean == boolean && string(r.quantity) == string(quantity) && string(r.sensor) == string(sensor) && string(r.unit) == string(unit) {
			return append(dst, dst[r.at:r.end]...)
		}
	}
	at := len(dst)
	dst = append(dst, `"n":`...)
	dst = appendJSONName(dst, sensor, quantity)
	if len(unit) > 0 {
		dst = append(dst, `,"u":`...)
		dst = append(dst, '"')
		dst = appendEscaped(dst, unit)
		dst = append(dst, '"')
	}
	if boolean {
		dst = append(dst, `,"vb":`...)
	} else {
		dst = append(dst, `,"v":`...)
	}
	r := nameRef{sensor: sensor, quantity: quantity, unit: unit, boolean: boolean, at: at, end: len(dst)}
	if p.nNames < len(p.names) {
		p.names[p.nNames] = r
		p.nNames++
	} else {
		p.names[p.next] = r
		p.next = (p.next + 1) % len(p.names)
	}
	return dst
}

// appendSeq writes seq in decimal.
func (p *packer) appendSeq(dst []byte, seq uint64) []byte {
	if p.seqLen > 0 && seq == p.seqN+1 {
		p.seqN = seq
		for i := p.seqLen - 1; i >= 0; i-- {
			if p.seq[i] != '9' {
				p.seq[i]++
				return append(dst, p.seq[:p.seqLen]...)
			}
			p.seq[i] = '0'
		}
		// All nines: it takes one more digit.
	}
	p.seqN = seq
	p.seqLen = len(strconv.AppendUint(p.seq[:0], seq, 10))
	return append(dst, p.seq[:p.seqLen]...)
}

// appendRecords writes the records of one stored reading. ok is false when
// the stored form is damaged; the caller then drops what was written.
func (p *packer) appendRecords(dst []byte, baseName string, it Item) ([]byte, bool) {
	b := it.Data
	if len(b) == 0 || b[0] != formatV1 {
		return dst, false
	}
	b = b[1:]
	ms, n := binary.Varint(b)
	if n <= 0 {
		return dst, false
	}
	b = b[n:]
	if !it.Time.IsZero() {
		ms = it.Time.UnixMilli()
	}
	sensor, b, okS := readBytes(b)
	count, n := binary.Uvarint(b)
	if !okS || n <= 0 || count > uint64(len(b)) {
		return dst, false
	}
	// What follows a record's value ("t", "seq", "tq" and the closing
	// brace) is the same for all records of a reading: written for the
	// first, copied for the others.
	tailAt, tailEnd := -1, 0
	b = b[n:]
	for i := uint64(0); i < count; i++ {
		if len(b) < 1 || b[0] > kindNum32 {
			return dst, false
		}
		kind := b[0]
		quantity, rest, okQ := readBytes(b[1:])
		unit, rest, okU := readBytes(rest)
		if !okQ || !okU || (kind == kindNum && len(rest) < 8) || (kind == kindNum32 && len(rest) < 4) {
			return dst, false
		}
		b = rest
		if p.first {
			p.bt = ms
			dst = append(dst, `{"bn":`...)
			dst = append(dst, '"')
			dst = appendEscaped(dst, []byte(baseName))
			dst = append(dst, '/', '"')
			dst = append(dst, `,"bt":`...)
			dst = appendMillis(dst, ms)
			dst = append(dst, ',')
		} else {
			dst = append(dst, ",{"...)
		}
		dst = p.appendName(dst, sensor, quantity, unit, kind)
		switch kind {
		case kindNum:
			v := math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return dst, false
			}
			dst = appendFloat64(dst, v)
		case kindNum32:
			v := math.Float32frombits(binary.LittleEndian.Uint32(b))
			b = b[4:]
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return dst, false
			}
			// The shortest form that reads back as the same float32: no
			// float64 noise digits (12.3, not 12.300000190734863).
			dst = appendFloat32(dst, v)
		default:
			dst = strconv.AppendBool(dst, kind == kindTrue)
		}
		p.first = false
		if tailAt >= 0 {
			dst = append(dst, dst[tailAt:tailEnd]...)
			continue
		}
		tailAt = len(dst)
		if ms != p.bt {
			dst = append(dst, `,"t":`...)
			dst = appendMillis(dst, ms-p.bt)
		}
		dst = append(dst, `,"seq":`...)
		dst = p.appendSeq(dst, it.Seq)
		if it.Mark != "" {
			dst = append(dst, `,"tq":"`...)
			dst = appendEscaped(dst, []byte(it.Mark))
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
		tailEnd = len(dst)
	}
	if len(b) != 0 || count == 0 {
		return dst, false
	}
	return dst, true
}

func readBytes(b []byte) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, b, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// appendJSONName writes "<sensor>/<quantity>" as a JSON string without
// building the joined string first.
func appendJSONName(dst, sensor, quantity []byte) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, sensor)
	dst = append(dst, '/')
	dst = appendEscaped(dst, quantity)
	return append(dst, '"')
}

// appendMillis writes ms milliseconds as seconds with up to three decimals.
func appendMillis(dst []byte, ms int64) []byte {
	if ms < 0 {
		dst = append(dst, '-')
		ms = -ms
	}
	dst = strconv.AppendInt(dst, ms/1000, 10)
	if frac := ms % 1000; frac != 0 {
		digits := [3]byte{byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := 3
		for digits[n-1] == '0' {
			n--
		}
		dst = append(dst, '.')
		dst = append(dst, digits[:n]...)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", b, errShort
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// checkName enforces SenML's name alphabet (RFC 8428 section 4.5.1) on the
// parts cityedge joins into record names.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == ':' || c == '.' || c == '/' || c == '_'
		if !ok {
			return fmt.Errorf("character %q is not allowed in a SenML name", c)
		}
	}
	return nil
}

// appendEscaped writes s escaped for the inside of a JSON string (RFC 8259
// section 7); invalid UTF-8 becomes U+FFFD. Names and units are plain
// ASCII (checkName): they are copied in one go.
func appendEscaped(dst, s []byte) []byte {
	for i, c := range s {
		if escapes[c] {
			return appendEscapedFrom(append(dst, s[:i]...), s[i:])
		}
	}
	return append(dst, s...)
}

// escapes marks the bytes appendEscaped cannot copy as they are.
var escapes = func() (t [256]bool) {
	for c := range t {
		t[c] = c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf
	}
	return t
}()

func appendEscapedFrom(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// pow10 holds the exact powers of ten the short float forms use.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6}

// appendFloat64 writes v exactly as strconv.AppendFloat(dst, v, 'g', -1, 64)
// does, faster for the values sensors report: a number between 1e-4 and
// 1e6 (where 'g' writes no exponent) that has a short decimal form with at
// most six decimals is written from that form. A decimal m/10^k with m
// below 2^53 divides exactly representable numbers, so m/10^k computed in
// float64 is the correctly rounded value of the decimal, the one a parser
// reads back; the first k at which it equals v, with m the integer nearest
// to v·10^k, gives the fewest digits that read back as v, and the closest of
// them (a tie goes to the even digit, as strconv does: a tie v·10^k = x.5
// is below 2^40, so the product is exact and the tie seen as one):
// strconv's shortest form.
// Anything else goes to strconv.
func appendFloat64(dst []byte, v float64) []byte {
	if a := math.Abs(v); a >= 1e-4 && a < 1e6 {
		for k, p := range pow10 {
			if m := math.RoundToEven(v * p); m/p == v {
				return appendDecimal(dst, int64(m), k)
			}
		}
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// appendFloat32 is appendFloat64 for a float32 sent at that precision
// (strconv.AppendFloat(dst, float64(v), 'g', -1, 32)); the decimal's
// integer stays below 2^24 and the division is done in float32.
func appendFloat32(dst []byte, v float32) []byte {
	if a := math.Abs(float64(v)); a >= 1e-4 && a < 1e6 {
		for k, p := range pow10 {
			m := math.RoundToEven(float64(v) * p)
			if math.Abs(m) >= 1<<24 {
				break
			}
			if float32(m)/float32(p) == v {
				return appendDecimal(dst, int64(m), k)
			}
		}
	}
	return strconv.AppendFloat(dst, float64(v), 'g', -1, 32)
}

// appendDecimal writes m/10^k with at most k decimals (no trailing zeros).
func appendDecimal(dst []byte, m int64, k int) []byte {
	if m < 0 {
		dst = append(dst, '-')
		m = -m
	}
	for k > 0 && m%10 == 0 {
		m, k = m/10, k-1
	}
	var buf [20]byte
	d := strconv.AppendUint(buf[:0], uint64(m), 10)
	switch {
	case k == 0:
		return append(dst, d...)
	case len(d) <= k:
		dst = append(dst, '0', '.')
		for range k - len(d) {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	}
	dst = append(dst, d[:len(d)-k]...)
	dst = append(dst, '.')
	return append(dst, d[len(d)-k:]...)
}

// StoredTime returns the time of a stored reading (AppendReading's output)
// without decoding the rest.
func StoredTime(b []byte) (time.Time, bool) {
	if len(b) == 0 || b[0] != formatV1 {
		return time.Time{}, false
	}
	ms, n := binary.Varint(b[1:])
	if n <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}
