// Command testjson reads the event stream of `go test -json` on standard
// input and prints what `go test` without -v would: each package's result
// line, and the whole output of every test that failed (a skipped test's
// reason too), then closes with a count of passed, failed and skipped tests.
//
// It exists so that CI can refuse a green run in which a test skipped: a
// skipped test proves nothing, and a missing capability (mosquitto, qemu, a
// tmpfs) must fail CI instead of vanishing from it. With
// CITYEDGE_REQUIRE_NO_SKIP=1 (set by .ci/run) any skipped test makes it exit 1
// and names the test and its reason.
//
// Usage: go test -json ./... | go run ./scripts/testjson
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is the part of test2json's TestEvent that the summary needs.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type summary struct {
	passed, failed int
	skipped        []string            // "pkg TestName: reason"
	pkgFailed      []string            // packages that failed outside any test (build errors, panics in init)
	lastOutput     map[string]string   // the newest output line of each test, for a skip's reason
	held           map[string][]string // output of tests still running, printed only if they fail
}

func main() {
	s, err := scan(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testjson: %v\n", err)
		os.Exit(1)
	}
	os.Exit(s.report(os.Stdout, os.Getenv("CITYEDGE_REQUIRE_NO_SKIP") == "1"))
}

// scan copies every output line to out and tallies the results.
func scan(in io.Reader, out io.Writer) (*summary, error) {
	s := &summary{lastOutput: map[string]string{}, held: map[string][]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go vet or the build printing before the stream): pass it on.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		s.add(e, out)
	}
	return s, sc.Err()
}

func (s *summary) add(e event, out io.Writer) {
	key := e.Package + " " + e.Test
	switch e.Action {
	case "output", "build-output":
		if e.Test == "" {
			// Package lines: ok/FAIL, build errors, a panic outside tests.
			if t := strings.TrimSpace(e.Output); t != "PASS" && !strings.HasPrefix(t, "=== ") {
				io.WriteString(out, e.Output)
			}
			return
		}
		s.held[key] = append(s.held[key], e.Output)
		if t := strings.TrimSpace(e.Output); t != "" && !strings.HasPrefix(t, "--- SKIP") && !strings.HasPrefix(t, "=== ") {
			s.lastOutput[key] = t
		}
		return
	case "pass":
		if e.Test != "" {
			s.passed++
		}
	case "fail", "build-fail":
		if e.Test != "" {
			s.failed++
			for _, line := range s.held[key] {
				io.WriteString(out, line)
			}
		} else {
			s.pkgFailed = append(s.pkgFailed, e.Package)
		}
	case "skip":
		if e.Test != "" {
			s.skipped = append(s.skipped, fmt.Sprintf("%s %s: %s", e.Package, e.Test, s.lastOutput[key]))
		}
	}
	delete(s.lastOutput, key)
	if e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
		delete(s.held, key)
	}
}

// report prints the closing lines and returns the exit status.
func (s *summary) report(out io.Writer, noSkip bool) int {
	status := 0
	if len(s.pkgFailed) > 0 {
		sort.Strings(s.pkgFailed)
		fmt.Fprintf(out, "testjson: packages failed: %s\n", strings.Join(s.pkgFailed, " "))
		status = 1
	}
	if s.failed > 0 {
		status = 1
	}
	if len(s.skipped) > 0 {
		sort.Strings(s.skipped)
		word := "skipped (allowed outside CI)"
		if noSkip {
			word = "skipped, which CI does not allow (CITYEDGE_REQUIRE_NO_SKIP=1): install what it needs"
			status = 1
		}
		fmt.Fprintf(out, "testjson: %d %s:\n", len(s.skipped), word)
		for _, sk := range s.skipped {
			fmt.Fprintf(out, "  %s\n", sk)
		}
	}
	fmt.Fprintf(out, "go test: %d passed, %d failed, %d skipped\n", s.passed, s.failed, len(s.skipped))
	return status
}
