package main

import (
	"fmt"
	"io"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
	"github.com/cityedge/cityedge/uplink/sentilo"
)

// printSentiloCatalog is --sentilo-catalog: the registration the city's
// Sentilo administrator posts before the gateway's readings are accepted.
func printSentiloCatalog(cfg *config.Config, stdout, stderr io.Writer) int {
	if !cfg.Sentilo.Enabled() {
		fmt.Fprintf(stderr, "cityedge: --sentilo-catalog: %s has no [sentilo] table\n", cfg.Path())
		return exitUsage
	}
	body, err := sentilo.CatalogBody(cfg.SentiloCatalog())
	if err != nil {
		fmt.Fprintf(stderr, "cityedge: --sentilo-catalog: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s\n", body)
	return exitOK
}
