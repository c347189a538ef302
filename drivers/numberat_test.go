package drivers

import (
	"strconv"
	"testing"
)

// TestNumberAt: a value converted through binary fractions is kept at the
// chip's resolution, so that its shortest form is what the datasheet means.
func TestNumberAt(t *testing.T) {
	for _, c := range []struct {
		v    float64
		dec  int
		want string
	}{
		{101322.5546875, 2, "101322.55"},
		{69.6982421875, 3, "69.698"},
		{-12.3449, 2, "-12.34"},
		{22, 0, "22"},
	} {
		if got := strconv.FormatFloat(NumberAt("q", "u", c.v, c.dec).Num, 'g', -1, 64); got != c.want {
			t.Errorf("NumberAt(%v, %d) = %s, want %s", c.v, c.dec, got, c.want)
		}
	}
}
