package main

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/diagnose"
)

// restart replaces the process with a fresh start (same PID) after the
// agent shut down cleanly to apply a pushed configuration or its rollback.
// Should the exec fail, the agent exits 1 and systemd starts it again.
func restart(log *slog.Logger) int {
	log.Info("restarting in place")
	err := agent.Exec()
	log.Error("restart in place failed; exiting so that the service manager starts the agent again", "err", err)
	return exitRuntime
}

// liveDiagnose is the remote diagnose command: the --diagnose --json report
// made with the running agent's own live state, never touching the
// hardware or the buffer.
func liveDiagnose(ctx context.Context, cfg *config.Config, live *agent.LiveState) ([]byte, error) {
	var b bytes.Buffer
	diagnose.Run(ctx, cfg, diagnose.Options{JSON: true, Live: live}, &b)
	return b.Bytes(), nil
}
