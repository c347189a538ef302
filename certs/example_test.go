package certs_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/cityedge/cityedge/certs"
)

// The agent loads the material once at start, hands a fresh tls.Config to
// each connection attempt, and lets Watch reload replaced files.
func Example() {
	store, err := certs.Load(certs.Options{
		CAFile:   "/etc/cityedge/ca.pem",
		CertFile: "/etc/cityedge/client.pem",
		KeyFile:  "/etc/cityedge/client.key",
		Logger:   slog.Default(),
	})
	if err != nil {
		slog.Error("certificates", "err", err) // names the file and the fix; exit 2
		return
	}
	go store.Watch(context.Background(), 30*time.Second, func() { /* uplink: reconnect */ })
	if cfg, err := store.TLSConfig(); err == nil {
		_ = cfg // dial the broker with it
	}
}
