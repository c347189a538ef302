package main

import (
	"fmt"
	"net"
	"os"

	"github.com/cityedge/cityedge/certs/devpki"
)

// guestHostIP is where qemu's user-mode network puts the host, as the guest
// sees it: the broker's certificate must name it, since the agent verifies
// the broker by the address it dials.
var guestHostIP = net.IPv4(10, 0, 2, 2)

// writePKI creates in dir: ca.pem, server.pem/.key for mosquitto (valid for
// 10.0.2.2 as the guest dials it, and 127.0.0.1 for the observer),
// client.pem/.key for the agent (CN = agent id) and observer.pem/.key for
// the host's subscriber.
func writePKI(dir, agentID string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ca, err := devpki.NewCA(dir, "ca")
	if err != nil {
		return fmt.Errorf("pki: CA: %w", err)
	}
	leaves := []struct {
		name string
		leaf devpki.Leaf
	}{
		{"server", devpki.Leaf{CN: "vm-test-broker", DNS: []string{"localhost"},
			IPs: []net.IP{guestHostIP, net.IPv4(127, 0, 0, 1)}, Server: true}},
		{"client", devpki.Leaf{CN: agentID, Client: true}},
		{"observer", devpki.Leaf{CN: "vm-test-observer", Client: true}},
	}
	for _, l := range leaves {
		if _, err := ca.Issue(l.name, l.leaf); err != nil {
			return fmt.Errorf("pki: %s certificate: %w", l.name, err)
		}
	}
	return nil
}
