package main

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	const stream = `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: mosquitto not found: apt-get install mosquitto\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"run","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:3: broke\n"}
{"Action":"fail","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"fail","Package":"q"}
go: downloading example.com/x v1.0.0
`
	cases := []struct {
		name       string
		noSkip     bool
		wantStatus int
		input      string
		wantOut    []string
	}{
		{"all kinds", false, 1, stream, []string{"c_test.go:3: broke", "ok  \tp", "go: downloading", "1 passed, 1 failed, 1 skipped",
			"p TestB: b_test.go:9: mosquitto not found", "packages failed: q"}},
		{"skip allowed", false, 0, `{"Action":"skip","Package":"p","Test":"TestB"}` + "\n", []string{"0 passed, 0 failed, 1 skipped", "allowed outside CI"}},
		{"skip refused in CI", true, 1, `{"Action":"skip","Package":"p","Test":"TestB"}` + "\n", []string{"CI does not allow"}},
		{"clean", true, 0, `{"Action":"pass","Package":"p","Test":"TestA"}` + "\n", []string{"1 passed, 0 failed, 0 skipped"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out strings.Builder
			s, err := scan(strings.NewReader(c.input), &out)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.report(&out, c.noSkip); got != c.wantStatus {
				t.Errorf("status %d, want %d\n%s", got, c.wantStatus, out.String())
			}
			if strings.Contains(out.String(), "=== RUN   TestA") {
				t.Errorf("a passing test's output was printed:\n%s", out.String())
			}
			for _, w := range c.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
