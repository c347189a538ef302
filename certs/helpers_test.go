package certs

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
)

const agentID = "gw-0042"

// fixture is a development PKI in a temporary directory and the Options that
// point at it.
type fixture struct {
	dir  string
	pki  *devpki.Set
	opts Options
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	set, err := devpki.Dev(dir, agentID)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, pki: set, opts: Options{
		CAFile:   set.CA.CertFile,
		CertFile: set.Client.CertFile,
		KeyFile:  set.Client.KeyFile,
	}}
}

// issue signs a new client certificate with the fixture's CA; its files are
// beside the CA, under name.
func (f *fixture) issue(t testing.TB, name string, l devpki.Leaf) *devpki.Issued {
	t.Helper()
	if l.CN == "" {
		l.CN = agentID
		l.Client = true
	}
	iss, err := f.pki.CA.Issue(name, l)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// foreign issues a client certificate from an unrelated CA.
func foreign(t testing.TB) *devpki.Issued {
	t.Helper()
	ca, err := devpki.NewCA(t.TempDir(), "foreign")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue("client", devpki.Leaf{CN: agentID, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// replace puts src in place of dst by an atomic rename within dst's
// directory, the way cert tools and configuration managers install files.
func replace(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".new")
	if err := os.WriteFile(tmp, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clock is a settable time source for the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func loadAt(t testing.TB, opts Options, now func() time.Time) *Store {
	t.Helper()
	s, err := load(opts, env{now: now, euid: os.Geteuid()})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return s
}

func mustLoad(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// wantAll fails unless s contains every one of subs.
func wantAll(t testing.TB, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%q\n  does not contain %q", s, sub)
		}
	}
}

// noKeyMaterial fails if text contains any base64 line of the given PEM key
// files, or a whole PEM certificate.
func noKeyMaterial(t testing.TB, text string, keyFiles ...string) {
	t.Helper()
	if strings.Contains(text, "-----END CERTIFICATE-----") {
		t.Errorf("output contains a whole certificate:\n%s", text)
	}
	for _, kf := range keyFiles {
		b, err := os.ReadFile(kf)
		if err != nil {
			continue // a key that is gone cannot leak either
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "-----") {
				continue
			}
			if strings.Contains(text, line) {
				t.Errorf("output contains key material from %s", kf)
				return
			}
		}
	}
}
