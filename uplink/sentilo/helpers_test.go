package sentilo

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/cityedge/cityedge/certs/devpki"
	"github.com/cityedge/cityedge/drivers"
	"github.com/cityedge/cityedge/scripts/testlog"
	"github.com/cityedge/cityedge/uplink/sentilo/sentilotest"
)

const (
	testToken    = "s3cr3t-t0ken-4b1d"
	testProvider = "cityedge-test"
)

var t0 = time.Date(2026, 6, 12, 10, 0, 0, 0, time.UTC)

type pki struct {
	set    *devpki.Set
	server *tls.Config
	client *tls.Config
}

func newPKI(t testing.TB) pki {
	t.Helper()
	set, err := devpki.Dev(t.TempDir(), "gw-test")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(set.CA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	srvCert, err := tls.LoadX509KeyPair(set.Server.CertFile, set.Server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := tls.LoadX509KeyPair(set.Client.CertFile, set.Client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pki{
		set:    set,
		server: &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		client: &tls.Config{Certificates: []tls.Certificate{cliCert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
	}
}

type rig struct {
	c     *Client
	srv   *sentilotest.Server
	clock *clockwork.FakeClock
	logs  *testlog.Buffer
}

// newRig starts the stand-in over TLS with sensors registered and a client
// on a fake clock.
func newRig(t testing.TB, sensors ...string) *rig {
	t.Helper()
	p := newPKI(t)
	srv := sentilotest.Start(t, sentilotest.Options{Provider: testProvider, Token: testToken, Sensors: sensors, TLS: p.server})
	r := &rig{srv: srv, clock: clockwork.NewFakeClockAt(t0), logs: &testlog.Buffer{}}
	r.c = newClient(t, srv.URL, p.client, r.clock, r.logs)
	return r
}

func newClient(t testing.TB, url string, tc *tls.Config, clock clockwork.Clock, logs *testlog.Buffer) *Client {
	t.Helper()
	c, err := New(Config{URL: url, Provider: testProvider, Token: testToken, TLS: tc, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rand:   rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// handlerRig serves h over TLS (for answers the stand-in does not give:
// a proxy's, a hung server).
func handlerRig(t testing.TB, h http.Handler) (*Client, *clockwork.FakeClock, *testlog.Buffer) {
	t.Helper()
	p := newPKI(t)
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = p.server
	ts.StartTLS()
	t.Cleanup(ts.Close)
	clock := clockwork.NewFakeClockAt(t0)
	logs := &testlog.Buffer{}
	return newClient(t, ts.URL, p.client, clock, logs), clock, logs
}

func num(id string, v float64, at time.Time, key uint64) Reading {
	return Reading{ID: id, Sensor: id, Value: drivers.Number("temperature", drivers.UnitCelsius, v), Time: at, Key: key}
}

func statuses(out []Outcome) string {
	var b strings.Builder
	for i, o := range out {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(o.Status.String())
	}
	return b.String()
}

// tlsSource is a Config.GetTLS whose material the test swaps, as a reload
// would. Until set it fails with why, like an unusable certificate set.
type tlsSource struct {
	why string

	mu      sync.Mutex
	current *tls.Config
	asked   int
}

func (s *tlsSource) get() (*tls.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	if s.current == nil {
		return nil, errors.New(s.why)
	}
	return s.current, nil
}

func (s *tlsSource) set(tc *tls.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = tc
}

// count is how many times the material was asked for.
func (s *tlsSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked
}
