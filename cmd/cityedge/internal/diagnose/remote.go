package diagnose

import (
	"fmt"
	"strings"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

// configNote says when the configuration in force is not the --config file
// (a configuration pushed with the remote config command), and when the
// client pair is the one install_cert installed.
func configNote(cfg *config.Config) string {
	var s string
	if cfg.Source() == "remote" {
		s = fmt.Sprintf("; pushed remotely, in force instead of %s", cfg.BasePath())
	}
	if cfg.InstalledCert() {
		s += fmt.Sprintf("; client certificate installed remotely (%s)", cfg.Uplink.CertFile)
	}
	return s
}

// outputsNote names the configured outputs for the config line.
func outputsNote(cfg *config.Config) string {
	var out []string
	if cfg.MQTT() {
		out = append(out, plural(len(cfg.Uplink.Brokers), "broker"))
	}
	if cfg.Sentilo.Enabled() {
		out = append(out, "Sentilo")
	}
	return strings.Join(out, ", ")
}
