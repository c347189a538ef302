package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/cityedge/cityedge/certs"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

// runEnroll is --enroll: it creates the key and writes the CSR (to standard output when
// csrPath is "-"); messages go to stderr so that the CSR can be piped.
func runEnroll(cfg *config.Config, csrPath string, stderr io.Writer) int {
	if err := certs.Enroll(cfg.Uplink.KeyFile, csrPath, cfg.Agent.ID); err != nil {
		fmt.Fprintf(stderr, "cityedge: enroll: %v\n", err)
		return exitRuntime
	}
	where := csrPath
	if csrPath == "-" {
		where = "standard output"
	}
	// Run as root (sudo), the key would belong to root and the agent, which
	// refuses keys owned by someone else, could not use it: hand it to the
	// service user, who owns the state directory.
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(cfg.Agent.StateDir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				if err := os.Chown(cfg.Uplink.KeyFile, int(st.Uid), int(st.Gid)); err != nil {
					fmt.Fprintf(stderr, "cityedge: enroll: could not give the key to uid %d (owner of %s): %v\n", st.Uid, cfg.Agent.StateDir, err)
					return exitRuntime
				}
				fmt.Fprintf(stderr, "cityedge: the key belongs to uid %d, the owner of %s (the service user)\n", st.Uid, cfg.Agent.StateDir)
			}
		}
	}
	fmt.Fprintf(stderr, "cityedge: new private key at %s (mode 0600, never leaves this device); CSR for CN=%s written to %s\n",
		cfg.Uplink.KeyFile, cfg.Agent.ID, where)
	return exitOK
}
