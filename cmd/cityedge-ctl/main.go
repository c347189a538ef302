// Command cityedge-ctl is the operators' tool for cityedge's signed remote
// commands (docs/REMOTE.md): it makes the city's Ed25519 signing key, and it
// signs a command, publishes it to a gateway over MQTT with mutual TLS,
// waits for the gateway's answer and prints it.
//
// Usage:
//
//	cityedge-ctl keygen --out NAME
//	cityedge-ctl --key ops.key --broker mqtts://host:port --ca CA --cert CERT --key-file KEY \
//	    [--site SITE] [--agent ID] [--ttl 5m] [--timeout 30s] [--kid=true] \
//	    <agent-id|topic_prefix> diagnose|status|config FILE|csr|install-cert FILE
//
// Exit status: 0 the command ran (ok true), 1 it failed, was rejected or no
// answer came in time, 2 bad usage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
