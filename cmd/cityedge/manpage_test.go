package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

var updateMan = flag.Bool("update-man", false, "rewrite docs/cityedge.1 (go generate ./cmd/cityedge)")

// TestManPage: docs/cityedge.1 is what the generator makes from today's
// flags, keys and README, and it names every flag and key. A flag or key
// added without regenerating the page fails here.
func TestManPage(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var gen bytes.Buffer
	manPage(&gen, readme)
	if *updateMan {
		if err := os.WriteFile(manPagePath, gen.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	page, err := os.ReadFile(manPagePath)
	if err != nil {
		t.Fatalf("%v: run go generate ./cmd/cityedge", err)
	}
	if !bytes.Equal(page, gen.Bytes()) {
		t.Errorf("docs/cityedge.1 is out of date: run go generate ./cmd/cityedge")
	}
	var o options
	newFlagSet(&o, io.Discard).VisitAll(func(f *flag.Flag) {
		if !bytes.Contains(page, []byte(`\-\-`+f.Name)) {
			t.Errorf("the man page lacks --%s", f.Name)
		}
	})
	var keys []string
	keys = append(keys, config.Keys()...)
	keys = append(keys, config.SensorKeys()...)
	for d, opts := range config.DriverKeys() {
		keys = append(keys, d)
		keys = append(keys, opts...)
	}
	for _, k := range keys {
		if !bytes.Contains(page, []byte(roff(k))) {
			t.Errorf("the man page lacks the key %s", k)
		}
	}
	if strings.Count(string(page), "See README.md.") > 0 {
		t.Logf("keys without a row in README's configuration table are listed as \"See README.md.\"")
	}
}
