package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/scripts/testlog"
)

func serialOf(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatalf("GetClientCertificate: %v", err)
	}
	return fmt.Sprintf("%X", c.Leaf.SerialNumber)
}

// TestReloadRotation: a new certificate and key renamed into place are picked
// up by Reload, also by a tls.Config handed out before; a CA bundle replaced
// by an identical copy, or no change at all, is not a client change.
func TestReloadRotation(t *testing.T) {
	f := newFixture(t)
	s := mustLoad(t, f.opts)
	before, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	first := s.Status()

	next := f.issue(t, "next", devpki.Leaf{})
	replace(t, next.CertFile, f.opts.CertFile)
	replace(t, next.KeyFile, f.opts.KeyFile)
	changed, err := s.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want true, nil", changed, err)
	}
	want := fmt.Sprintf("%X", next.Cert.SerialNumber)
	if got := serialOf(t, before); got != want {
		t.Errorf("old tls.Config presents serial %s, want the new %s", got, want)
	}
	st := s.Status()
	if st.ClientSerial != want || st.LastReloadError != "" || st.LastReload.Before(first.LastReload) {
		t.Errorf("Status after rotation = %+v", st)
	}

	if changed, err := s.Reload(); err != nil || changed {
		t.Errorf("Reload without a change = %v, %v; want false, nil", changed, err)
	}
	replace(t, f.opts.CAFile, f.opts.CAFile)
	if changed, err := s.Reload(); err != nil || changed {
		t.Errorf("Reload after an identical CA bundle = %v, %v; want false, nil", changed, err)
	}
}

// TestReloadRejects: a broken new set is refused, the old certificate stays
// live (also in a tls.Config handed out before), the error names the cause
// and stays in Status until a good set arrives.
func TestReloadRejects(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name     string
		setup    func(t *testing.T, f *fixture)
		want     []string
		sentinel error
	}{
		{"key mismatch: certificate replaced, key not", func(t *testing.T, f *fixture) {
			replace(t, f.issue(t, "next", devpki.Leaf{}).CertFile, f.opts.CertFile)
		}, []string{"uplink.key_file", "does not belong"}, nil},
		{"expired set", func(t *testing.T, f *fixture) {
			old := f.issue(t, "old", devpki.Leaf{CN: agentID, Client: true, NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.Add(-time.Hour)})
			replace(t, old.CertFile, f.opts.CertFile)
			replace(t, old.KeyFile, f.opts.KeyFile)
		}, []string{"uplink.cert_file", "expired on"}, ErrExpired},
		{"not yet valid set", func(t *testing.T, f *fixture) {
			future := f.issue(t, "future", devpki.Leaf{CN: agentID, Client: true, NotBefore: now.Add(24 * time.Hour), NotAfter: now.AddDate(1, 0, 0)})
			replace(t, future.CertFile, f.opts.CertFile)
			replace(t, future.KeyFile, f.opts.KeyFile)
		}, []string{"uplink.cert_file", "valid only from"}, ErrNotYetValid},
		{"foreign CA", func(t *testing.T, f *fixture) {
			fc := foreign(t)
			replace(t, fc.CertFile, f.opts.CertFile)
			replace(t, fc.KeyFile, f.opts.KeyFile)
		}, []string{"uplink.cert_file", "not a CA in uplink.ca_file"}, nil},
		{"garbage certificate", func(t *testing.T, f *fixture) {
			write(t, f.opts.CertFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"), 0o644)
		}, []string{"uplink.cert_file", "malformed or truncated"}, nil},
		{"unreadable: certificate removed", func(t *testing.T, f *fixture) {
			os.Remove(f.opts.CertFile)
		}, []string{"uplink.cert_file", "does not exist"}, nil},
		{"key made world-readable", func(t *testing.T, f *fixture) {
			os.Chmod(f.opts.KeyFile, 0o644)
		}, []string{"uplink.key_file", "chmod 600"}, nil},
		{"CA bundle replaced by another CA", func(t *testing.T, f *fixture) {
			other, err := devpki.NewCA(t.TempDir(), "other")
			if err != nil {
				t.Fatal(err)
			}
			replace(t, other.CertFile, f.opts.CAFile)
		}, []string{"uplink.cert_file", "not a CA in uplink.ca_file"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s := mustLoad(t, f.opts)
			cfg, err := s.TLSConfig()
			if err != nil {
				t.Fatal(err)
			}
			live := fmt.Sprintf("%X", f.pki.Client.Cert.SerialNumber)
			caCopy := f.dir + "/ca-copy.pem"
			write(t, caCopy, mustRead(t, f.opts.CAFile), 0o644)

			tc.setup(t, f)
			changed, err := s.Reload()
			if err == nil || changed {
				t.Fatalf("Reload = %v, %v; want false and an error", changed, err)
			}
			t.Log(err)
			wantAll(t, err.Error(), append(tc.want, "rejected", "still using CN="+agentID)...)
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error does not wrap %v", tc.sentinel)
			}
			noKeyMaterial(t, err.Error(), f.opts.KeyFile, f.pki.Client.KeyFile)
			if got := serialOf(t, cfg); got != live {
				t.Errorf("live serial %s, want the old %s", got, live)
			}
			if cfg2, err := s.TLSConfig(); err != nil || serialOf(t, cfg2) != live {
				t.Errorf("TLSConfig after a rejected set: %v", err)
			}
			st := s.Status()
			if st.ClientSerial != live || st.Expired {
				t.Errorf("Status after a rejected set = %+v", st)
			}
			wantAll(t, st.LastReloadError, tc.want...)

			// Putting a good set in place clears the error.
			good := f.issue(t, "good", devpki.Leaf{})
			replace(t, caCopy, f.opts.CAFile)
			replace(t, good.CertFile, f.opts.CertFile)
			replace(t, good.KeyFile, f.opts.KeyFile)
			if changed, err := s.Reload(); err != nil || !changed {
				t.Fatalf("Reload of a good set = %v, %v", changed, err)
			}
			if st := s.Status(); st.LastReloadError != "" {
				t.Errorf("LastReloadError kept after a good reload: %q", st.LastReloadError)
			}
		})
	}
}

// TestWatch: files renamed into place are noticed by polling, reloaded, and
// reported through changed; a broken replacement is logged and kept in
// Status, without calling changed; logs carry no key or certificate.
func TestWatch(t *testing.T) {
	f := newFixture(t)
	var logs testlog.Buffer
	f.opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := mustLoad(t, f.opts)

	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, 5*time.Millisecond, func() { changed <- struct{}{} }) }()

	// Rotation: certificate first, then the key, as two separate renames.
	next := f.issue(t, "next", devpki.Leaf{})
	replace(t, next.CertFile, f.opts.CertFile)
	replace(t, next.KeyFile, f.opts.KeyFile)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not report the rotation")
	}
	if got, want := s.Status().ClientSerial, fmt.Sprintf("%X", next.Cert.SerialNumber); got != want {
		t.Fatalf("serial after rotation %s, want %s", got, want)
	}

	// A broken replacement: a certificate whose key never comes.
	stray := f.issue(t, "stray", devpki.Leaf{})
	replace(t, stray.CertFile, f.opts.CertFile)
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().LastReloadError == "" {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not record the rejected set")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-changed:
		t.Error("changed was called for a rejected set")
	default:
	}
	if got, want := s.Status().ClientSerial, fmt.Sprintf("%X", next.Cert.SerialNumber); got != want {
		t.Errorf("serial after a rejected set %s, want the previous %s", got, want)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch returned %v after cancel, want nil", err)
	}
	out := logs.String()
	wantAll(t, out, "certificate set reloaded", "new certificate set rejected", "does not belong")
	noKeyMaterial(t, out, f.opts.KeyFile, f.pki.Client.KeyFile, next.KeyFile, stray.KeyFile)
	if strings.Contains(out, "PRIVATE KEY-----") {
		t.Error("log mentions a PEM private key")
	}
}

// TestWatchRetriesNotYetValid: a set rejected only because it is not valid
// yet is taken once the clock reaches its start, without another file
// change.
func TestWatchRetriesNotYetValid(t *testing.T) {
	f := newFixture(t)
	clk := newClock(time.Now())
	s := loadAt(t, f.opts, clk.now)
	start := clk.now().Add(time.Hour)
	future := f.issue(t, "future", devpki.Leaf{CN: agentID, Client: true, NotBefore: start, NotAfter: start.AddDate(1, 0, 0)})
	replace(t, future.CertFile, f.opts.CertFile)
	replace(t, future.KeyFile, f.opts.KeyFile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 10)
	go s.Watch(ctx, 5*time.Millisecond, func() { changed <- struct{}{} })

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Status().LastReloadError, "valid only from") {
		if time.Now().After(deadline) {
			t.Fatal("the not yet valid set was not rejected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	clk.set(start.Add(time.Minute))
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the set was not taken once valid")
	}
	if got, want := s.Status().ClientSerial, fmt.Sprintf("%X", future.Cert.SerialNumber); got != want {
		t.Errorf("serial %s, want %s", got, want)
	}
}

// TestWatchCABundleChange: a new CA bundle (here the old CA plus a new one,
// as in a CA rollover) is not a client change for Reload, but Watch still
// calls changed, so that the broker is verified again under the new trust.
func TestWatchCABundleChange(t *testing.T) {
	f := newFixture(t)
	s := mustLoad(t, f.opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 10)
	go s.Watch(ctx, 5*time.Millisecond, func() { changed <- struct{}{} })

	next, err := devpki.NewCA(t.TempDir(), "next")
	if err != nil {
		t.Fatal(err)
	}
	bundle := f.dir + "/bundle.pem"
	write(t, bundle, append(mustRead(t, f.opts.CAFile), mustRead(t, next.CertFile)...), 0o644)
	replace(t, bundle, f.opts.CAFile)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not report the new CA bundle")
	}
	if st := s.Status(); st.LastReloadError != "" {
		t.Errorf("LastReloadError = %q", st.LastReloadError)
	}
	cancel()
	if changed, err := s.Reload(); err != nil || changed {
		t.Errorf("Reload after the bundle was taken = %v, %v; want false, nil", changed, err)
	}
}

func TestWatchBadInterval(t *testing.T) {
	s := mustLoad(t, newFixture(t).opts)
	if err := s.Watch(context.Background(), 0, nil); err == nil {
		t.Error("Watch with a zero interval returned nil")
	}
}

// TestOpenUnusableThenFixed: TLS material that is wrong at start does not
// stop the agent: Open returns a store whose TLSConfig refuses with
// ErrNoUsableSet, Status names the file and the fix, and the set is taken as
// soon as the files are fixed, reported through Watch's changed.
func TestOpenUnusableThenFixed(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, f *fixture)
		fix     func(t *testing.T, f *fixture)
		want    []string
		root    bool
	}{
		{"missing key", func(t *testing.T, f *fixture) {
			if err := os.Rename(f.opts.KeyFile, f.opts.KeyFile+".away"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) {
			replace(t, f.opts.KeyFile+".away", f.opts.KeyFile)
		}, []string{"uplink.key_file", "does not exist"}, false},
		{"loose key permissions", func(t *testing.T, f *fixture) {
			chmod(t, f.opts.KeyFile, 0o644)
		}, func(t *testing.T, f *fixture) {
			chmod(t, f.opts.KeyFile, 0o600)
		}, []string{"uplink.key_file", "chmod 600"}, false},
		{"mismatched key", func(t *testing.T, f *fixture) {
			other := f.issue(t, "other", devpki.Leaf{})
			replace(t, other.KeyFile, f.opts.KeyFile)
		}, func(t *testing.T, f *fixture) {
			next := f.issue(t, "next", devpki.Leaf{})
			replace(t, next.CertFile, f.opts.CertFile)
			replace(t, next.KeyFile, f.opts.KeyFile)
		}, []string{"does not belong"}, false},
		{"key of a foreign owner", func(t *testing.T, f *fixture) {
			if err := os.Chown(f.opts.KeyFile, 4242, -1); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) {
			if err := os.Chown(f.opts.KeyFile, os.Geteuid(), -1); err != nil {
				t.Fatal(err)
			}
		}, []string{"owned by 4242", "chown"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				requireRoot(t)
			}
			f := newFixture(t)
			c.breakIt(t, f)
			var logs testlog.Buffer
			f.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			s, err := Open(f.opts)
			if err != nil {
				t.Fatalf("Open: %v (wrong TLS material must not stop the agent)", err)
			}
			if _, err := s.TLSConfig(); !errors.Is(err, ErrNoUsableSet) {
				t.Fatalf("TLSConfig error %v, want ErrNoUsableSet", err)
			}
			st := s.Status()
			if !st.Unusable || !st.Expired {
				t.Errorf("Status %+v: want Unusable and Expired (the uplink waits)", st)
			}
			wantAll(t, st.Warning, c.want...)
			wantAll(t, logs.String(), "uplink stays down")
			if _, err := Load(f.opts); err == nil {
				t.Error("Load accepted the broken set; only Open keeps going")
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			changed := make(chan struct{}, 10)
			done := make(chan error, 1)
			go func() { done <- s.Watch(ctx, 5*time.Millisecond, func() { changed <- struct{}{} }) }()
			c.fix(t, f)
			select {
			case <-changed:
			case <-time.After(10 * time.Second):
				t.Fatalf("Watch did not take the fixed set; status %+v", s.Status())
			}
			if _, err := s.TLSConfig(); err != nil {
				t.Errorf("TLSConfig after the fix: %v", err)
			}
			if st := s.Status(); st.Unusable || st.Expired || st.ClientSubject == "" {
				t.Errorf("Status after the fix %+v", st)
			}
			cancel()
			<-done
			noKeyMaterial(t, logs.String(), f.opts.KeyFile)
		})
	}
}

// TestReloadAfterUnusableOpen: SIGHUP's path (Reload) also takes a set that
// was missing at start.
func TestReloadAfterUnusableOpen(t *testing.T) {
	f := newFixture(t)
	chmod(t, f.opts.KeyFile, 0o640)
	s, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), "still no usable certificate set") {
		t.Fatalf("Reload of a still broken set: %v", err)
	}
	chmod(t, f.opts.KeyFile, 0o600)
	changed, err := s.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload after the fix: changed=%v err=%v", changed, err)
	}
}

// TestServiceUserJudgesKey: --diagnose run as root (or as a technician) on a
// gateway whose service runs as its own user judges the key's owner against
// that user, and never advises a chown to the technician.
func TestServiceUserJudgesKey(t *testing.T) {
	requireRoot(t)
	const svc = 4242
	f := newFixture(t)
	if err := os.Chown(f.opts.KeyFile, svc, -1); err != nil {
		t.Fatal(err)
	}
	uid := svc
	f.opts.ServiceUID = &uid
	if _, err := Load(f.opts); err != nil {
		t.Fatalf("root judging a key owned by the service user: %v", err)
	}
	other := 4343
	f.opts.ServiceUID = &other
	_, err := Load(f.opts)
	if err == nil {
		t.Fatal("a key owned by someone else than the service user was accepted")
	}
	wantAll(t, err.Error(), "owned by 4242", "chown 4343 ")

	// A technician who cannot read the key is told to run as root or as the
	// service user, not to take the key over.
	e := env{now: time.Now, euid: 4343}
	f.opts.ServiceUID = &uid
	chmod(t, f.opts.KeyFile, 0o600)
	err = openError(source{keyKey, f.opts.KeyFile}, fs.ErrPermission, users{euid: e.euid, owner: uid})
	wantAll(t, err.Error(), "run as root or as 4242")
	if strings.Contains(err.Error(), "make 4343 its owner") {
		t.Errorf("advice would lock the service out: %v", err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CITYEDGE_REQUIRE_ROOT") == "1" {
		t.Fatal("needs root (CITYEDGE_REQUIRE_ROOT=1)")
	}
	t.Skip("SKIP: needs root to give a file to another user")
}
