package sentilo

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// Defaults of the [sentilo] keys the client owns.
const (
	DefaultBatchMax      = 100
	DefaultBatchWait     = time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultOccupiedValue = "true"
	DefaultFreeValue     = "false"
	// MaxRequestBytes bounds one request body. With DefaultBatchMax
	// observations a body is about 10 KB; the bound keeps a request far
	// below what Sentilo can take within its 5 s socket timeout
	// (sentilo.server.api.socket.timeout-ms, RequestListenerThread.java).
	MaxRequestBytes = 32 << 10
)

// Config configures a Client. The caller reads the token with ReadToken and
// builds TLS from the certificates (the client certificate is presented to
// the city's reverse proxy, which speaks TLS for Sentilo).
type Config struct {
	URL      string // sentilo.url: https://host[:port][/prefix]
	Provider string // sentilo.provider
	Token    string // from sentilo.token_file; never logged
	TLS      *tls.Config
	// GetTLS, when set, is asked for the TLS configuration at every new
	// connection instead of TLS: certificates reloaded on disk (a CA
	// included) take effect at the next connection, and material that is
	// unusable at start only fails the requests (backed off like a network
	// error) until it is fixed.
	GetTLS func() (*tls.Config, error)

	BatchMax  int           // sentilo.batch_max: observations per request (default 100)
	BatchWait time.Duration // sentilo.batch_wait: how long the forwarder gathers a batch (default 1 s)
	Timeout   time.Duration // sentilo.timeout: one request, connect to last byte (default 10 s)

	OccupiedValue string // sentilo.occupied_value (default "true")
	FreeValue     string // sentilo.free_value (default "false")

	Clock  clockwork.Clock // nil: the real clock
	Logger *slog.Logger    // nil: slog.Default()
	Rand   *rand.Rand      // jitter source; nil: a random seed
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.BatchMax == 0 {
		c.BatchMax = DefaultBatchMax
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.OccupiedValue == "" {
		c.OccupiedValue = DefaultOccupiedValue
	}
	if c.FreeValue == "" {
		c.FreeValue = DefaultFreeValue
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return c
}

// Validate checks the settings, naming the key at fault. The token's value
// never appears in an error.
func (c Config) Validate() error {
	if err := ValidateURL(c.URL); err != nil {
		return err
	}
	if err := ValidateProvider(c.Provider); err != nil {
		return err
	}
	if c.Token == "" {
		return errors.New("sentilo.token_file: no token")
	}
	if c.TLS == nil && c.GetTLS == nil {
		return errors.New("sentilo: no TLS configuration")
	}
	if c.BatchMax < 1 || c.BatchMax > 1000 {
		return fmt.Errorf("sentilo.batch_max: %d is outside 1..1000", c.BatchMax)
	}
	if c.BatchWait < 0 || c.BatchWait > time.Minute {
		return fmt.Errorf("sentilo.batch_wait: %s is outside 0..1m", c.BatchWait)
	}
	if c.Timeout < time.Second || c.Timeout > 5*time.Minute {
		return fmt.Errorf("sentilo.timeout: %s is outside 1s..5m", c.Timeout)
	}
	for _, kv := range [][2]string{{"sentilo.occupied_value", c.OccupiedValue}, {"sentilo.free_value", c.FreeValue}} {
		if kv[1] == "" {
			return fmt.Errorf("%s: empty", kv[0])
		}
	}
	if c.OccupiedValue == c.FreeValue {
		return fmt.Errorf("sentilo.occupied_value and sentilo.free_value are both %q", c.OccupiedValue)
	}
	return nil
}

// ValidateURL accepts only https:// URLs with a host, no query, no user
// information: there is no plaintext fallback, ever.
func ValidateURL(raw string) error {
	if raw == "" {
		return errors.New("sentilo.url: required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("sentilo.url: %w", err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("sentilo.url: %q: only https:// is accepted (TLS to the city's proxy; no plaintext)", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("sentilo.url: %q has no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("sentilo.url: %q: no user, query or fragment allowed", raw)
	}
	return nil
}

// ValidateProvider checks a provider id: Sentilo ids are [0-9A-Za-z_-]+
// (docs/api_docs/services/catalog/create_sensors.rst).
func ValidateProvider(p string) error {
	if p == "" {
		return errors.New("sentilo.provider: required")
	}
	if !validID(p) {
		return fmt.Errorf("sentilo.provider: %q: only letters, digits, '_' and '-' are allowed", p)
	}
	return nil
}

// ReadToken reads the provider's token from path (key sentilo.token_file).
// Like a private key, the file must not be readable by group or others; the
// token is the file's content without surrounding white space, one line, and
// is never part of an error.
func ReadToken(path string) (string, error) {
	const key = "sentilo.token_file"
	if path == "" {
		return "", fmt.Errorf("%s: required", key)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s %s: does not exist", key, path)
		}
		return "", fmt.Errorf("%s %s: %w", key, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", key, path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s: not a regular file", key, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s %s: mode %04o lets group or others read the token; chmod 600 %s", key, path, perm, path)
	}
	if fi.Size() > 4096 {
		return "", fmt.Errorf("%s %s: %d bytes is too long for a token", key, path, fi.Size())
	}
	b := make([]byte, fi.Size()+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("%s %s: %w", key, path, err)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if tok == "" {
		return "", fmt.Errorf("%s %s: empty", key, path)
	}
	for _, r := range tok {
		if r <= ' ' || r >= 0x7f {
			return "", fmt.Errorf("%s %s: the token must be one line of printable ASCII without spaces", key, path)
		}
	}
	return tok, nil
}
