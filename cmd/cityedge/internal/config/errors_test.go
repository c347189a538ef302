package config

import (
	"strings"
	"testing"
)

// TestParseListsEveryError: one reading of a file lists every problem in
// it, in the order of the file, each with its line and key, and near misses
// of known keys get a suggestion.
func TestParseListsEveryError(t *testing.T) {
	dir := t.TempDir()
	text := validConfig(t, dir)
	for _, r := range [][2]string{
		{`site = "eixample-17"`, `stie = "eixample-17"`},
		{`max_bytes = "256MiB"`, `max_bytes = "lots"`},
		{`batch_max = 100`, `batch_max = 1e12`},
		{`batch_wait = "1s"`, "batch_wait = \"1s\"\nwindow = 0"},
		{`debounce = "200ms"`, `debonce = "200ms"`},
		{`address = 0x76`, `address = 0x80`},
	} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("%q not in config", r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	_, err := parse(t, dir, text)
	all := AllErrors(err)
	want := []struct {
		key  string
		line int
		say  string
	}{
		{"agent.stie", 3, "did you mean `site`?"},
		{"buffer.max_bytes", 7, "not a size"},
		{"uplink.batch_max", 11, "must be a whole number written without quotes or decimals (e.g. 100), not the decimal number 1e+12"},
		{"uplink.window", 13, "out of range"},
		{"sensors[0].debonce", 23, "did you mean `debounce`?"},
		{"sensors[1].address", 29, "7-bit"},
	}
	if len(all) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(all), len(want), err)
	}
	for i, w := range want {
		e := all[i]
		if e.Key != w.key || e.Line != w.line || !strings.Contains(e.Msg, w.say) {
			t.Errorf("error %d = %q (key %s line %d), want key %s line %d saying %q", i, e.Error(), e.Key, e.Line, w.key, w.line, w.say)
		}
		if strings.Contains(e.Msg, "UplinkConfig") || strings.Contains(e.Msg, "struct field") {
			t.Errorf("error %d names Go internals: %s", i, e.Msg)
		}
	}
}

// TestParseWordsForPeople: each kind of mistake is named by its key, in
// words, never by a Go type.
func TestParseWordsForPeople(t *testing.T) {
	cases := []struct {
		name, old, new, key, say string
	}{
		{"float where an integer belongs", `batch_max = 100`, `batch_max = 1e12`, "uplink.batch_max", "whole number"},
		{"huge integer", `batch_max = 100`, `batch_max = 1000000000000`, "uplink.batch_max", "out of range"},
		{"non-UTF-8 value", `site = "eixample-17"`, "site = \"eix\xffample\"", "agent.site", "not UTF-8"},
		{"string where a list belongs", `brokers = ["mqtts://broker.example.org:8883"]`, `brokers = "mqtts://broker.example.org:8883"`, "uplink.brokers", "list"},
		{"boolean as string", `batch_max = 100`, "batch_max = 100\nsystem_roots = \"yes\"", "uplink.system_roots", "true or false"},
		{"unknown table near miss", "[buffer]", "[bufer]", "bufer", "did you mean `buffer`?"},
		{"duplicate key", `batch_wait = "1s"`, "batch_wait = \"1s\"\nbatch_wait = \"2s\"", "uplink.batch_wait", "already defined"},
		{"unknown sensor key near miss", `address = 0x76`, `adress = 0x76`, "sensors[1].adress", "did you mean `address`?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			text := validConfig(t, dir)
			if !strings.Contains(text, c.old) {
				t.Fatalf("%q not in config", c.old)
			}
			_, err := parse(t, dir, strings.Replace(text, c.old, c.new, 1))
			all := AllErrors(err)
			if len(all) == 0 {
				t.Fatalf("accepted or not a ConfigError: %v", err)
			}
			if all[0].Key != c.key || !strings.Contains(all[0].Msg, c.say) || strings.Contains(all[0].Msg, "Config.") {
				t.Errorf("got %v; want key %s saying %q", err, c.key, c.say)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"site", "site", 0}, {"sight", "site", 3}, {"siet", "site", 1}, {"", "abc", 3}, {"adress", "address", 1}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
