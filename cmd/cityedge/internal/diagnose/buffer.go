package diagnose

import (
	"errors"
	"fmt"
	"os"

	"github.com/cityedge/cityedge/buffer"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

// diagnoseBuffer looks at the buffer file of a stopped agent through
// buffer.Inspect only: read-only, under a shared lock, changing nothing
// (no compaction, salvage, trimming or upgrade, no file created). A
// technician runs --diagnose as root; a file rewritten by root would lock
// the service out. Only the agent repairs the file, at its next start, and
// the report says what it will do.
func diagnoseBuffer(cfg *config.Config, r *report) {
	path := cfg.BufferPath()
	in, err := buffer.Inspect(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.add("buffer", path, Warn, "no buffer file yet (created at the agent's first start)")
		return
	case err != nil:
		r.add("buffer", path, Fail, "%v", err)
		return
	case in.Locked:
		r.add("buffer", path, Warn, "locked by another process, but no agent answers on the control socket")
		return
	case in.Damaged != "":
		r.add("buffer", path, Fail, "damaged: %s; %s", in.Damaged, in.NextStart)
		return
	case in.NextStart != "":
		r.add("buffer", path, Warn, "%s", in.NextStart)
		return
	}
	v := Pass
	if in.DroppedTotal > 0 || in.Corrupt > 0 || in.Salvage != nil {
		v = Warn
	}
	trim := ""
	if in.Bytes > int64(cfg.Buffer.MaxBytes) {
		v = Warn
		trim = fmt.Sprintf("; holds more than buffer.max_bytes (%s): the agent drops the oldest readings at its next start",
			bytesIEC(int64(cfg.Buffer.MaxBytes)))
	}
	corrupt := ""
	if in.Corrupt > 0 {
		corrupt = fmt.Sprintf(", %d undecodable records removed", in.Corrupt)
	}
	r.add("buffer", path, v, "file %s, backlog %s (%s), oldest %s, dropped %d%s%s%s",
		bytesIEC(in.FileBytes), plural(int(in.Count), "reading"), bytesIEC(in.Bytes), age(in.OldestTime), in.DroppedTotal, corrupt,
		salvageNote(in.Salvage), trim)
}
