package sentilo

import (
	"strconv"
	"time"
)

// TimestampLayout is Sentilo's timestamp pattern dd/MM/yyyy'T'HH:mm:ssZ
// (TIMEZONE_TIMESTAMP_PATTERN in sentilo-common/.../utils/DateUtils.java) in
// Go's notation. Sentilo parses it non-leniently with seconds only; a
// 2-digit year would be read as a year of the first century, so the year
// always has four digits.
const TimestampLayout = "02/01/2006T15:04:05-0700"

// FormatTime renders t for Sentilo: truncated to the second, in UTC
// ("+0000"), four-digit year.
func FormatTime(t time.Time) string {
	return string(AppendTime(nil, t))
}

// AppendTime appends FormatTime(t) to dst.
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC().Truncate(time.Second)
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	dst = append2(dst, d)
	dst = append(dst, '/')
	dst = append2(dst, int(mo))
	dst = append(dst, '/')
	dst = append(dst, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
	dst = append(dst, 'T')
	dst = append2(dst, h)
	dst = append(dst, ':')
	dst = append2(dst, mi)
	dst = append(dst, ':')
	dst = append2(dst, s)
	return append(dst, "+0000"...)
}

func append2(dst []byte, v int) []byte { return append(dst, byte('0'+v/10%10), byte('0'+v%10)) }

// FormatNumber is the shortest decimal that parses back to the number the
// SenML record carries: at float32 precision when the source measured in
// float32 (SPS30's IEEE floats: "12.3", not "12.300000190734863"), else at
// float64 precision. Plain decimal notation, never an exponent.
func FormatNumber(v float64, float32Source bool) string {
	return string(AppendNumber(nil, v, float32Source))
}

// AppendNumber appends FormatNumber(v, float32Source) to dst.
func AppendNumber(dst []byte, v float64, float32Source bool) []byte {
	if float32Source {
		return strconv.AppendFloat(dst, float64(float32(v)), 'f', -1, 32)
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

// FormatLocation turns our [lon, lat] into Sentilo's "lat lng" (latitude
// first; DataConverter.java passes it to SentiloUtils.isValidLocationFormat).
func FormatLocation(lonLat [2]float64) string {
	return string(appendLocation(nil, lonLat))
}

func appendLocation(dst []byte, lonLat [2]float64) []byte {
	dst = strconv.AppendFloat(dst, lonLat[1], 'f', -1, 64)
	dst = append(dst, ' ')
	return strconv.AppendFloat(dst, lonLat[0], 'f', -1, 64)
}
