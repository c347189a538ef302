// Package uplink is the agent's MQTT session: it connects to a broker over
// mutual TLS, publishes batches handed to it by a Source with QoS 1, tells the
// Source which batches the broker acknowledged, and keeps a retained status
// message (with a matching last will) on the broker.
//
// It knows bytes, not sensors or storage: cmd glues it to the buffer through
// the Source interface declared here.
//
// Delivery is at-least-once. A batch is reported as acknowledged only when its
// PUBACK arrived on the connection that sent it; every new connection starts
// with Source.Rewind, so whatever was not acknowledged is offered again. paho's
// automatic reconnect is never used, because with it a publish token can
// complete without error although no PUBACK ever came (paho issue #563):
// every session is a fresh paho client with a clean session, and this package
// runs its own reconnect loop with capped, jittered backoff.
package uplink

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"
)

// Batch is one message for the broker.
type Batch struct {
	// Payload is a SenML pack, published to <TopicPrefix>/readings with QoS 1,
	// not retained.
	Payload []byte
	// Seqs are the buffer sequence numbers the batch carries. They are opaque
	// here: uplink only logs them and hands the batch back to Source.Acked.
	Seqs []uint64
}

// Source is the agent's view of the durable buffer. Next is called from one
// goroutine, Acked and Rewind from another: Next may run concurrently with
// Acked, never with Rewind.
type Source interface {
	// Next blocks until a batch is ready to send or ctx is done. It never
	// returns a batch twice within one session unless Rewind was called.
	Next(ctx context.Context) (Batch, error)
	// Acked is called once the broker's PUBACK for b arrived on the connection
	// that sent it. Calls come in publish order.
	Acked(b Batch) error
	// Rewind is called at the start of every new connection: everything not
	// acked must be offered again.
	Rewind()
}

// Config describes the uplink. Zero durations and sizes take the defaults
// named on each field.
type Config struct {
	// Brokers are tried in order ("mqtts://host:port"; "ssl" and "tls" are
	// accepted as synonyms, the port defaults to 8883). Plaintext schemes are
	// rejected: there is no plaintext path.
	Brokers []string
	// ClientID is the MQTT client identifier (the agent id).
	ClientID string
	// TopicPrefix: batches go to <prefix>/readings, status to <prefix>/status.
	TopicPrefix string
	// TLSConfig is called before every connection attempt, so renewed
	// certificates are picked up without a restart. An error (for example an
	// expired client certificate) means no attempt is made: the error is
	// logged and reported in State, and the attempt is retried after backoff.
	// The returned config is cloned, never modified; TLS 1.2 is the floor and
	// a config with InsecureSkipVerify is refused.
	TLSConfig func() (*tls.Config, error)
	// Window is how many publishes may await their PUBACK at once (default
	// 16; 1 is stop-and-wait).
	Window int
	// KeepAlive is the MQTT keep-alive interval (default 30s).
	KeepAlive time.Duration
	// ConnectTimeout bounds the TCP connect plus TLS handshake, and separately
	// the wait for CONNACK (default 10s).
	ConnectTimeout time.Duration
	// AckTimeout is the longest wait for a PUBACK; when it passes the session
	// is dropped and everything unacknowledged is sent again (default 30s).
	AckTimeout time.Duration
	// BackoffMin is the cadence of quick retries (default 1s): the first
	// attempt after a session is lost comes within it, and while the broker
	// refuses TCP (it is down) attempts follow about BackoffMin apart for the
	// first 10 s. BackoffMax caps every wait (default 2m): attempts are never
	// further apart. See backoff.go for the whole policy.
	BackoffMin, BackoffMax time.Duration
	// ReconnectSpread is the window over which reconnects are spread once
	// quick retries would herd (default 30s): when a live broker refuses or
	// times out the handshake, or the broker has been down for more than
	// 10 s, the next attempt comes at a random moment within this window of
	// the session's loss, and each further failure doubles the window up to
	// BackoffMax (exponential backoff with full jitter).
	ReconnectSpread time.Duration
	// Status returns the retained status payload published to
	// <prefix>/status: Status(true) on every connect and every StatusEvery,
	// Status(false) as the last will (taken at connect time) and on shutdown.
	// nil publishes {"state":"online"} and {"state":"offline"}.
	Status func(online bool) []byte
	// StatusEvery is the interval of status re-publication while online
	// (default 60s).
	StatusEvery time.Duration
	// StopTimeout bounds the clean shutdown when Run's context ends: waiting
	// for in-flight PUBACKs and the offline status (default 2s).
	StopTimeout time.Duration
	// Logger receives the uplink's logs and paho's warnings and errors
	// (default slog.Default()).
	Logger *slog.Logger
	// Subscriptions are subscribed to, QoS 1, on every connection (see
	// side.go); a refused subscription ends the session like a failed
	// connect.
	Subscriptions []Subscription

	// Test seams.
	clock clockwork.Clock
	rand  *rand.Rand
}

// Defaults for zero Config fields.
const (
	DefaultKeepAlive       = 30 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultAckTimeout      = 30 * time.Second
	DefaultBackoffMin      = time.Second
	DefaultBackoffMax      = 2 * time.Minute
	DefaultReconnectSpread = 30 * time.Second
	DefaultStatusEvery     = 60 * time.Second
	DefaultStopTimeout     = 2 * time.Second
)

// State is a snapshot of the uplink for status messages and diagnostics.
type State struct {
	Connected      bool
	Broker         string    // broker of the current session, or of the last attempt
	ConnectedSince time.Time // zero when not connected
	LastUpload     time.Time // when the last batch was acknowledged
	LastError      string    // most recent error, kept after recovery
	LastErrorAt    time.Time
	Published      uint64 // batches published since start
	Acked          uint64 // batches acknowledged by the broker since start
	InFlight       int    // batches awaiting PUBACK now
	Sessions       uint64 // successful connections since start
	// While not connected: when the next connection attempt (one round over
	// the brokers) is due, zero while an attempt runs or a session is up;
	// and how many attempts were made since the last session ended (or
	// since start).
	NextAttempt time.Time
	Attempts    int
}

// Client is an MQTT uplink. Create it with New and call Run once.
type Client struct {
	cfg           Config
	src           Source
	log           *slog.Logger
	brokers       []*url.URL
	readingsTopic string
	statusTopic   string
	clock         clockwork.Clock
	rnd           *rand.Rand

	reconnect chan struct{}
	statusNow chan struct{} // PublishStatus
	running   atomic.Bool
	inFlight  atomic.Int64

	side  *sides     // retained topics and one-off messages beside the backlog
	inbox chan inMsg // received messages waiting for their handler

	// Failed attempts in a row and the last error text: a broker that stays
	// down is logged at growing intervals, not on every attempt.
	failStreak int
	failText   string

	mu sync.Mutex
	st State
}

// New validates cfg and returns a Client that publishes the batches of src.
func New(cfg Config, src Source) (*Client, error) {
	if src == nil {
		return nil, errors.New("uplink: no source")
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	brokers := make([]*url.URL, 0, len(cfg.Brokers))
	for _, b := range cfg.Brokers {
		u, err := ParseBroker(b)
		if err != nil {
			return nil, fmt.Errorf("uplink: %w", err)
		}
		brokers = append(brokers, u)
	}
	installPahoLogger(cfg.Logger)
	return &Client{
		cfg:           cfg,
		src:           src,
		log:           cfg.Logger,
		brokers:       brokers,
		readingsTopic: cfg.TopicPrefix + "/readings",
		statusTopic:   cfg.TopicPrefix + "/status",
		clock:         cfg.clock,
		rnd:           cfg.rand,
		reconnect:     make(chan struct{}, 1),
		statusNow:     make(chan struct{}, 1),
		side:          newSides(),
		inbox:         make(chan inMsg, maxInbox),
	}, nil
}

func (cfg *Config) fill() error {
	if len(cfg.Brokers) == 0 {
		return errors.New("uplink: no broker configured")
	}
	for _, sub := range cfg.Subscriptions {
		if sub.Suffix == "" || strings.ContainsAny(sub.Suffix, "+#\x00") || sub.Handle == nil {
			return fmt.Errorf("uplink: subscription %q: a topic suffix without wildcards and a handler are needed", sub.Suffix)
		}
	}
	if cfg.ClientID == "" || !utf8.ValidString(cfg.ClientID) || strings.ContainsRune(cfg.ClientID, 0) {
		return fmt.Errorf("uplink: client id %q: must be non-empty UTF-8 without NUL", cfg.ClientID)
	}
	if err := CheckTopicPrefix(cfg.TopicPrefix); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	if cfg.TLSConfig == nil {
		return errors.New("uplink: no TLS configuration source (TLSConfig is nil)")
	}
	if cfg.Window != 0 {
		if err := CheckWindow(cfg.Window); err != nil {
			return fmt.Errorf("uplink: window %w (0 for the default %d)", err, DefaultWindow)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"keep-alive", &cfg.KeepAlive, DefaultKeepAlive},
		{"connect timeout", &cfg.ConnectTimeout, DefaultConnectTimeout},
		{"ack timeout", &cfg.AckTimeout, DefaultAckTimeout},
		{"minimum backoff", &cfg.BackoffMin, DefaultBackoffMin},
		{"maximum backoff", &cfg.BackoffMax, DefaultBackoffMax},
		{"reconnect spread", &cfg.ReconnectSpread, DefaultReconnectSpread},
		{"status interval", &cfg.StatusEvery, DefaultStatusEvery},
		{"stop timeout", &cfg.StopTimeout, DefaultStopTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("uplink: %s %v: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.KeepAlive < time.Second {
		return fmt.Errorf("uplink: keep-alive %v: MQTT counts it in whole seconds, use at least 1s", cfg.KeepAlive)
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return fmt.Errorf("uplink: maximum backoff %v is below the minimum %v", cfg.BackoffMax, cfg.BackoffMin)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Status == nil {
		cfg.Status = defaultStatus
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.clock == nil {
		cfg.clock = clockwork.NewRealClock()
	}
	if cfg.rand == nil {
		// Seeded from the OS per process: gateways that boot together must
		// not draw the same jitter.
		var seed [32]byte
		_, _ = crand.Read(seed[:]) // never fails on Linux (Go 1.24+ crashes instead)
		cfg.rand = rand.New(rand.NewChaCha8(seed))
	}
	return nil
}

func defaultStatus(online bool) []byte {
	if online {
		return []byte(`{"state":"online"}`)
	}
	return []byte(`{"state":"offline"}`)
}

// Reconnect drops the current session and connects again at once, for example
// because the client certificate was renewed. Batches in flight are given up
// to StopTimeout to be acknowledged; the rest are sent again. When not
// connected, it cuts a pending backoff short.
func (c *Client) Reconnect() {
	select {
	case c.reconnect <- struct{}{}:
	default:
	}
}

// State returns a snapshot of the uplink.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.InFlight = int(c.inFlight.Load())
	return st
}

func (c *Client) setError(err error) {
	c.mu.Lock()
	c.st.LastError = err.Error()
	c.st.LastErrorAt = c.clock.Now()
	c.mu.Unlock()
}
