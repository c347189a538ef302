package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/atomicfile"
)

// ZoneSeqFile holds, in agent.state_dir, the zones' seq reservations:
// {"<zone>": <first seq not yet reserved>}. The agent reserves seqs in blocks
// of zoneSeqBlock and rewrites the file (atomically: temp file, fsync,
// rename) only when a zone's seq reaches the end of its block, so a zone
// message costs no flash write; after a restart or a crash each zone goes on
// from the end of its last block. Seq thus only ever grows; a crash skips at
// most one block.
const ZoneSeqFile = "zones.seq"

// zoneSeqBlock is how many zone changes one write of ZoneSeqFile covers (at
// one change a minute per zone, one small write every 16 hours).
const zoneSeqBlock = 1000

// zoneSeqs keeps the reservations.
type zoneSeqs struct {
	path   string
	mu     sync.Mutex
	limit  map[string]uint64 // zone → first seq not reserved
	writes int               // file writes since start
}

// openZoneSeqs reads the reservations; start holds, per zone, the seq
// before the first one this run may use (guidance.New's seqs). A file that
// cannot be read or parsed is moved aside (ZoneSeqFile + ".damaged") and
// every zone goes on from the wall clock's Unix seconds, which no zone
// changing less than once a second on average since 1970 has reached: seq
// still only grows. The problem is returned for the log, with s usable.
func openZoneSeqs(dir string, zones []string, now time.Time) (s *zoneSeqs, start map[string]uint64, problem error) {
	s = &zoneSeqs{path: filepath.Join(dir, ZoneSeqFile), limit: map[string]uint64{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &s.limit)
	}
	if err != nil {
		_ = os.Rename(s.path, s.path+".damaged")
		s.limit = map[string]uint64{}
		start = map[string]uint64{}
		for _, z := range zones {
			start[z] = uint64(max(now.Unix(), 0))
		}
		return s, start, fmt.Errorf("zone seq file %s is damaged (%v): moved aside; zone seqs go on from the clock's Unix seconds", s.path, err)
	}
	start = map[string]uint64{}
	for z, l := range s.limit {
		if l > 0 {
			start[z] = l - 1
		}
	}
	return s, start, nil
}

// reserve makes sure seq is inside zone's reserved block, writing the file
// first when it is not. It returns an error when the file cannot be written:
// the caller still publishes (a stale seq after a later crash is less harm
// than a sign or a zone message that stops).
func (s *zoneSeqs) reserve(zone string, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq < s.limit[zone] {
		return nil
	}
	next := make(map[string]uint64, len(s.limit))
	for z, l := range s.limit {
		next[z] = l
	}
	next[zone] = seq + zoneSeqBlock
	data, _ := json.Marshal(next)
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("reserve zone seqs: %w", err)
	}
	s.limit = next
	s.writes++
	return nil
}
