package uplink

import (
	"context"
	"crypto/tls"
	"net/url"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		Brokers:     []string{"mqtts://broker.example.org:8883"},
		ClientID:    "gw-0042",
		TopicPrefix: "cityedge/eixample-17/gw-0042",
		TLSConfig:   func() (*tls.Config, error) { return &tls.Config{}, nil },
	}
}

func TestNewValidates(t *testing.T) {
	nop := func(*Config) {}
	tests := []struct {
		name   string
		modify func(*Config)
		nilSrc bool
		want   string // substring of the error; "" means valid
	}{
		{"valid", nop, false, ""},
		{"ssl and tls schemes", func(c *Config) { c.Brokers = []string{"ssl://a:1", "tls://b", "MQTTS://c"} }, false, ""},
		{"plaintext mqtt", func(c *Config) { c.Brokers = []string{"mqtt://broker:1883"} }, false, "plaintext scheme"},
		{"plaintext tcp", func(c *Config) { c.Brokers = []string{"tcp://broker:1883"} }, false, "plaintext scheme"},
		{"plaintext after a good one", func(c *Config) { c.Brokers = []string{"mqtts://a:8883", "mqtt://b:1883"} }, false, "mqtt://b:1883"},
		{"websocket", func(c *Config) { c.Brokers = []string{"ws://broker/mqtt"} }, false, "plaintext scheme"},
		{"unknown scheme", func(c *Config) { c.Brokers = []string{"https://broker"} }, false, "unsupported scheme"},
		{"no scheme", func(c *Config) { c.Brokers = []string{"broker:8883"} }, false, "broker"},
		{"no broker", func(c *Config) { c.Brokers = nil }, false, "no broker"},
		{"no host", func(c *Config) { c.Brokers = []string{"mqtts://:8883"} }, false, "no host"},
		{"path", func(c *Config) { c.Brokers = []string{"mqtts://broker:8883/mqtt"} }, false, "path"},
		{"no client id", func(c *Config) { c.ClientID = "" }, false, "client id"},
		{"no prefix", func(c *Config) { c.TopicPrefix = "" }, false, "empty topic prefix"},
		{"wildcard prefix", func(c *Config) { c.TopicPrefix = "city/+/gw" }, false, "wildcards"},
		{"hash prefix", func(c *Config) { c.TopicPrefix = "city/#" }, false, "wildcards"},
		{"trailing slash", func(c *Config) { c.TopicPrefix = "city/" }, false, "trailing"},
		{"system topic", func(c *Config) { c.TopicPrefix = "$SYS/x" }, false, "reserved"},
		{"no TLS", func(c *Config) { c.TLSConfig = nil }, false, "TLS"},
		{"negative window", func(c *Config) { c.Window = -1 }, false, "window"},
		{"huge window", func(c *Config) { c.Window = 100000 }, false, "window"},
		{"negative timeout", func(c *Config) { c.AckTimeout = -time.Second }, false, "ack timeout"},
		{"sub-second keep-alive", func(c *Config) { c.KeepAlive = 500 * time.Millisecond }, false, "keep-alive"},
		{"backoff inverted", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, time.Second }, false, "maximum backoff"},
		{"no source", nop, true, "no source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.modify(&cfg)
			var src Source = newMemSource(0)
			if tt.nilSrc {
				src = nil
			}
			c, err := New(cfg, src)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.cfg.Window != DefaultWindow || c.cfg.AckTimeout != DefaultAckTimeout || c.cfg.ReconnectSpread != DefaultReconnectSpread {
					t.Errorf("defaults not applied: %+v", c.cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted the config, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseBroker(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"mqtts://broker.example.org:8883", "mqtts://broker.example.org:8883", ""},
		{"mqtts://broker.example.org", "mqtts://broker.example.org:8883", ""},
		{"ssl://10.0.0.1:443", "mqtts://10.0.0.1:443", ""},
		{"tls://[::1]:8883", "mqtts://[::1]:8883", ""},
		{"mqtts://broker:8883/", "mqtts://broker:8883", ""},
		{"mqtt://broker:1883", "", "use mqtts://"},
		{"mqtts://gw:s3cret@broker:8883", "", "credentials"},
		{"mqtt://gw:s3cret@broker:1883", "", "plaintext scheme"},
		{"mqtts://gw:s3cret@bro ker:8883", "", "does not parse"},
		{"mqtts://broker:8883?x=1", "", "query"},
		{"://broker", "", "missing protocol scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseBroker(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBroker(%q) = %v, %v; want error containing %q", tt.in, u, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBroker(%q): %v", tt.in, err)
			}
			if u.String() != tt.want {
				t.Errorf("ParseBroker(%q) = %s, want %s", tt.in, u, tt.want)
			}
		})
	}
}

func TestSessionTLS(t *testing.T) {
	u := &url.URL{Scheme: "mqtts", Host: "broker.example.org:8883"}
	tests := []struct {
		name     string
		base     *tls.Config
		wantErr  string
		wantMin  uint16
		wantSNI  string
		wantALPN []string
	}{
		{name: "nil", base: nil, wantErr: "nil"},
		{name: "insecure refused", base: &tls.Config{InsecureSkipVerify: true}, wantErr: "InsecureSkipVerify"},
		{name: "floor raised to 1.2", base: &tls.Config{MinVersion: tls.VersionTLS10}, wantMin: tls.VersionTLS12, wantSNI: "broker.example.org"},
		{name: "1.3 kept", base: &tls.Config{MinVersion: tls.VersionTLS13}, wantMin: tls.VersionTLS13, wantSNI: "broker.example.org"},
		{name: "server name override kept", base: &tls.Config{ServerName: "mqtt.city.example"}, wantMin: tls.VersionTLS12, wantSNI: "mqtt.city.example"},
		{name: "ALPN kept", base: &tls.Config{NextProtos: []string{"mqtt"}}, wantMin: tls.VersionTLS12, wantSNI: "broker.example.org", wantALPN: []string{"mqtt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before tls.Config
			if tt.base != nil {
				before = *tt.base.Clone()
			}
			got, err := sessionTLS(tt.base, u)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("sessionTLS = %v; want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == tt.base {
				t.Fatal("sessionTLS returned the caller's config instead of a clone")
			}
			if got.MinVersion != tt.wantMin || got.ServerName != tt.wantSNI {
				t.Errorf("MinVersion %x ServerName %q; want %x %q", got.MinVersion, got.ServerName, tt.wantMin, tt.wantSNI)
			}
			if strings.Join(got.NextProtos, ",") != strings.Join(tt.wantALPN, ",") {
				t.Errorf("NextProtos %v, want %v", got.NextProtos, tt.wantALPN)
			}
			if tt.base.MinVersion != before.MinVersion || tt.base.ServerName != before.ServerName {
				t.Error("sessionTLS modified the caller's config")
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	c, err := New(validConfig(), newMemSource(0))
	if err != nil {
		t.Fatal(err)
	}
	c.running.Store(true) // as if Run were running
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run = %v, want an error", err)
	}
}
