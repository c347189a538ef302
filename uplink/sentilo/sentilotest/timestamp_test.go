package sentilotest

import (
	"regexp"
	"strconv"
	"testing"
	"time"
)

// referenceTimestamp is the stand-in's first reading of Sentilo's
// timestamp, with a regular expression; parseTimestamp must agree with it.
func referenceTimestamp(ts string) (time.Time, bool) {
	m := regexp.MustCompile(`^(\d{2})/(\d{2})/(\d{1,4})T(\d{2}):(\d{2}):(\d{2})([+-]\d{4})?$`).FindStringSubmatch(ts)
	if m == nil {
		return time.Time{}, false
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	off := 0
	if m[7] != "" {
		h, _ := strconv.Atoi(m[7][1:3])
		mi, _ := strconv.Atoi(m[7][3:5])
		off = h*3600 + mi*60
		if m[7][0] == '-' {
			off = -off
		}
	}
	t := time.Date(n(3), time.Month(n(2)), n(1), n(4), n(5), n(6), 0, time.FixedZone("", off))
	if t.Day() != n(1) || int(t.Month()) != n(2) || t.Hour() != n(4) || t.Minute() != n(5) || t.Second() != n(6) {
		return time.Time{}, false
	}
	return t.UTC(), true
}

func TestParseTimestamp(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // RFC 3339 in UTC; "" when refused
	}{
		{"06/12/2026T10:00:00+0000", "2026-12-06T10:00:00Z"},
		{"06/12/2026T10:00:00", "2026-12-06T10:00:00Z"},
		{"06/12/2026T11:30:00+0130", "2026-12-06T10:00:00Z"},
		{"06/12/2026T08:00:00-0200", "2026-12-06T10:00:00Z"},
		{"06/12/26T10:00:00+0000", "0026-12-06T10:00:00Z"}, // a 2-digit year is year 0026
		{"06/12/7T10:00:00+0000", "0007-12-06T10:00:00Z"},
		{"31/02/2026T10:00:00+0000", ""}, // non-lenient
		{"06/12/2026T25:00:00+0000", ""},
		{"06/12/2026T10:60:00+0000", ""},
		{"6/12/2026T10:00:00+0000", ""},
		{"06/12/20260T10:00:00+0000", ""},
		{"06/12/2026 10:00:00+0000", ""},
		{"06/12/2026T10:00:00Z", ""},
		{"06/12/2026T10:00:00+000", ""},
		{"06/12/2026T10:00:00+00000", ""},
		{"06/12/2026T10:00:00.5+0000", ""},
		{"06/12/2026T10:00+0000", ""},
		{"06-12-2026T10:00:00+0000", ""},
		{"０6/12/2026T10:00:00+0000", ""}, // digits are ASCII only
		{"", ""},
	} {
		got, ok := parseTimestamp(c.in)
		ref, refOK := referenceTimestamp(c.in)
		if ok != refOK || !got.Equal(ref) {
			t.Errorf("%q: parseTimestamp = %v, %v; the regular expression says %v, %v", c.in, got, ok, ref, refOK)
		}
		if s := got.Format(time.RFC3339); ok != (c.want != "") || ok && s != c.want {
			t.Errorf("%q: %v %v, want %q", c.in, s, ok, c.want)
		}
	}
}

func FuzzParseTimestamp(f *testing.F) {
	f.Add("06/12/2026T10:00:00+0000")
	f.Add("31/02/2026T10:00:00-0130")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTimestamp(s)
		ref, refOK := referenceTimestamp(s)
		if ok != refOK || !got.Equal(ref) {
			t.Errorf("%q: parseTimestamp = %v, %v; the regular expression says %v, %v", s, got, ok, ref, refOK)
		}
	})
}
