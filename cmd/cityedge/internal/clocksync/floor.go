package clocksync

import "time"

// Floor is the build date assumed by a build that does not know its own
// (no -ldflags date, no VCS stamp): no build of this code is older, so no
// wall time before it is believed either.
var Floor = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
