package uplink

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The rules below are the uplink's own; the agent's configuration calls them
// instead of keeping copies, so a value it accepts is one New accepts.

// Window, batch and spread limits.
const (
	DefaultWindow = 16
	MaxWindow     = 256 // far below MQTT's 65535 packet identifiers

	DefaultBatchMax  = 100  // readings per message
	MaxBatchMax      = 1000 // readings per message
	DefaultBatchWait = time.Second
	MaxBatchWait     = time.Minute
	// MaxPayload bounds one message: brokers commonly cap packets well above
	// this, and a bounded message keeps memory flat while draining a backlog.
	MaxPayload = 256 << 10

	MaxReconnectSpread = time.Hour
)

// CheckWindow accepts 1 to MaxWindow publishes in flight.
func CheckWindow(n int) error {
	if n < 1 || n > MaxWindow {
		return fmt.Errorf("%d is out of range: use 1 to %d messages in flight", n, MaxWindow)
	}
	return nil
}

// CheckBatchMax accepts 1 to MaxBatchMax readings per message.
func CheckBatchMax(n int) error {
	if n < 1 || n > MaxBatchMax {
		return fmt.Errorf("%d is out of range: use 1 to %d readings per message", n, MaxBatchMax)
	}
	return nil
}

// CheckBatchWait accepts 0 to MaxBatchWait for a partial batch to wait.
func CheckBatchWait(d time.Duration) error {
	if d < 0 || d > MaxBatchWait {
		return fmt.Errorf("%v is out of range: use 0s to %v", d, shortDuration(MaxBatchWait))
	}
	return nil
}

// CheckReconnectSpread accepts 0 to MaxReconnectSpread.
func CheckReconnectSpread(d time.Duration) error {
	if d < 0 || d > MaxReconnectSpread {
		return fmt.Errorf("%v is out of range: use 0s to %v", d, shortDuration(MaxReconnectSpread))
	}
	return nil
}

// shortDuration writes whole minutes and hours as "1m" and "1h".
func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

// CheckTopicPrefix accepts a prefix that can be published under: non-empty
// levels separated by '/', UTF-8 without NUL, no wildcards, no '$' topics.
func CheckTopicPrefix(p string) error {
	switch {
	case p == "":
		return errors.New("empty topic prefix")
	case !utf8.ValidString(p) || strings.ContainsRune(p, 0):
		return fmt.Errorf("topic prefix %q: must be UTF-8 without NUL", p)
	case strings.ContainsAny(p, "+#"):
		return fmt.Errorf("topic prefix %q: MQTT wildcards '+' and '#' are not allowed in a topic", p)
	case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//"):
		return fmt.Errorf("topic prefix %q: use non-empty levels separated by '/', no leading, trailing or doubled '/'", p)
	case strings.HasPrefix(p, "$"):
		return fmt.Errorf("topic prefix %q: topics starting with '$' are reserved for the broker", p)
	}
	return nil
}

// ParseBroker checks a broker URL and returns it normalised (the port
// defaults to 8883). Only TLS schemes are accepted: mqtts, ssl and tls; there
// is no plaintext path.
//
// Errors never repeat a password given in the URL.
func ParseBroker(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole input
		}
		return nil, fmt.Errorf("broker URL does not parse: %w", err)
	}
	shown := u.Redacted()
	switch strings.ToLower(u.Scheme) {
	case "mqtts", "ssl", "tls":
	case "mqtt", "tcp", "ws", "unix":
		return nil, fmt.Errorf("broker %q: plaintext scheme %q refused: cityedge only speaks TLS; use mqtts://host:8883", shown, u.Scheme)
	case "wss":
		return nil, fmt.Errorf("broker %q: scheme %q is not supported: cityedge only speaks TLS as MQTT over TLS; use mqtts://host:8883", shown, u.Scheme)
	default:
		return nil, fmt.Errorf("broker %q: unsupported scheme %q; use mqtts://host:port", shown, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("broker %q: credentials in the URL are not supported; the gateway authenticates with its client certificate", shown)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("broker %q: no host", shown)
	}
	if net.ParseIP(host) == nil && strings.ContainsAny(host, " _") {
		return nil, fmt.Errorf("broker %q: host %q is not a valid host name", shown, host)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("broker %q: only scheme, host and port are allowed: a path, query or fragment has no meaning for MQTT", shown)
	}
	port := u.Port()
	if port == "" {
		port = "8883"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("broker %q: port %q is not a port number", shown, port)
	}
	return &url.URL{Scheme: "mqtts", Host: net.JoinHostPort(host, port)}, nil
}
