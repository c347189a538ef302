package buffer

// CountDropped counts n records of key that a producer dropped before they
// reached the queue (the agent's in-memory hand-off when the disk stalls).
// They are counted like the queue's own drops: in Stats().Dropped and
// DroppedTotal at once, and persistently with the next commit, so status and
// the drop report explain every such loss. The producer logs its own drops.
func (q *Queue) CountDropped(key string, n uint64) {
	if n == 0 {
		return
	}
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return
	}
	q.memDrops[key] += n
	q.mu.Unlock()
	q.kick()
}
