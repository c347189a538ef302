package agent

import (
	"os"
	"runtime/debug"
)

// defaultMemoryLimit is the soft limit on the Go runtime's memory (heap,
// stacks, runtime metadata) the agent sets when GOMEMLIMIT is not in its
// environment. Without it the garbage collector lets the heap grow to twice
// what is live before collecting: draining a large backlog at full speed,
// the agent's anonymous memory reached 16 MiB, the target. Under the limit
// the collector runs sooner as the heap nears it; the limit is soft, so an
// agent that really needs more memory gets it (the collector then spends
// more CPU, at most about half of it). Set GOMEMLIMIT (for example
// GOMEMLIMIT=64MiB, or GOMEMLIMIT=off for none) in the unit's environment
// to change it.
const defaultMemoryLimit = 12 << 20

// SetMemoryLimit applies defaultMemoryLimit unless GOMEMLIMIT is set.
func SetMemoryLimit() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return
	}
	debug.SetMemoryLimit(defaultMemoryLimit)
}
