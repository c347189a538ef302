package buffer

// enforceBound drops records until the live bytes are within limit, in the
// order of the drop policy (dropOrder): the oldest of the first group of
// classes, then of the next. Every drop is counted per key; a record that
// cannot be decoded is counted as corrupt.
func (t *txn) enforceBound(limit int64) error {
	for _, group := range dropOrder(t.classes) {
		if t.live <= limit {
			return nil
		}
		heads := seekAll(t.tx, group, nil)
		for t.live > limit {
			i := heads.oldest()
			if i < 0 {
				break
			}
			h := &heads[i]
			if err := t.outDrop(keySeq(h.k)); err != nil {
				return err
			}
			if rec, err := decodeRecord(h.v); err == nil {
				if t.res.drops == nil {
					t.res.drops = map[string]uint64{}
				}
				t.res.drops[string(rec.key)]++
			} else {
				t.res.corrupt++
			}
			if err := t.dropAt(h); err != nil {
				return err
			}
			h.k, h.v = h.c.First()
		}
	}
	return nil
}

// dropAt removes the element under h's cursor.
func (t *txn) dropAt(h *head) error {
	if h.v == nil {
		// A nested bucket cannot be in a data bucket; remove it all the same.
		t.live -= int64(elemOverhead)
		t.count--
		t.res.removed++
		return h.c.Bucket().DeleteBucket(h.k)
	}
	return t.remove(h.c, h.v)
}
