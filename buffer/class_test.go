package buffer

import (
	"fmt"
	"testing"
)

// TestDropOrder is the drop policy's table: environmental readings, the
// drop report and unknown classes go first (one group, oldest first),
// occupancy changes and zone counts last.
func TestDropOrder(t *testing.T) {
	for _, tc := range []struct {
		present []Class
		want    string
	}{
		{nil, "[]"},
		{[]Class{ClassEnvironmental}, "[[0]]"},
		{[]Class{ClassOccupancy}, "[[1]]"},
		{[]Class{ClassEnvironmental, ClassOccupancy}, "[[0] [1]]"},
		{[]Class{ClassOccupancy, ClassEnvironmental}, "[[0] [1]]"},
		{[]Class{ClassEnvironmental, ClassOccupancy, ClassReport}, "[[0 2] [1]]"},
		{[]Class{ClassReport, ClassOccupancy}, "[[2] [1]]"},
		{[]Class{ClassOccupancy, ClassReport, ClassEnvironmental, ClassZone, 200}, "[[0 2 200] [1 3]]"},
		{[]Class{ClassEnvironmental, ClassZone, 4}, "[[0 4] [3]]"},
		{[]Class{ClassReport, ClassReport, ClassEnvironmental}, "[[0 2]]"},
	} {
		if got := fmt.Sprint(dropOrder(tc.present)); got != tc.want {
			t.Errorf("dropOrder(%v) = %s, want %s", tc.present, got, tc.want)
		}
	}
	if ClassEnvironmental != 0 || ClassOccupancy != 1 || ClassReport != 2 || ClassZone != 3 {
		t.Fatal("class values are stored in every record and must never change")
	}
}
