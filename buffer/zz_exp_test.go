package buffer

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestExpBig(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("EXP_MB"))
	batch, _ := strconv.Atoi(os.Getenv("EXP_BATCH"))
	if mb == 0 {
		t.Skip()
	}
	q := openT(t, filepath.Join(t.TempDir(), "b.db"), Options{MaxBytes: int64(mb) << 20})
	defer q.Close()
	var maxFile int64
	n := 0
	for int64(n)*190 < 3*(int64(mb)<<20) {
		recs := make([]Record, batch)
		for i := range recs {
			recs[i] = Record{Key: "air-1", Data: payload("air-1", n, 141)}
			n++
		}
		appendT(t, q, recs...)
		if n%(batch*20) == 0 {
			if fb := q.Stats().FileBytes; fb > maxFile {
				maxFile = fb
			}
		}
	}
	st := q.Stats()
	t.Logf("max file %.4f × MaxBytes, live %.3f, ratio %.3f, limit %d", float64(maxFile)/float64(int64(mb)<<20), float64(st.Bytes)/float64(int64(mb)<<20), float64(maxFile)/float64(st.Bytes), q.limit)
}
