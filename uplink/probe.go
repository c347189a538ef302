package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jonboulle/clockwork"
)

// ProbeResult is what Probe learned about a broker.
type ProbeResult struct {
	Broker     string        // the broker URL, normalised
	Addrs      []string      // the addresses DNS gave for its host
	TLSVersion uint16        // the negotiated TLS version
	Handshake  time.Duration // TCP connect plus TLS handshake
	// ConnackAfter is how long the broker took to answer CONNECT: long
	// when it holds CONNECTs (RabbitMQ while its client-id registry has no
	// leader) or authenticates slowly.
	ConnackAfter time.Duration
	Peer         *x509.Certificate
}

// Probe connects once to broker the way a session does: the same URL rule,
// the same TLS configuration (TLS 1.2 floor, no InsecureSkipVerify, server
// name from the URL), the same dial and handshake with the same explained
// errors, and an MQTT CONNECT under clientID. It waits for the CONNACK and
// disconnects cleanly. It sets no last will, so that a probe never changes
// the retained status of an agent running under another client id. A nil
// error means the agent's own path to this broker works.
func Probe(ctx context.Context, broker, clientID string, tlsConfig func() (*tls.Config, error), timeout time.Duration) (ProbeResult, error) {
	return probe(ctx, broker, clientID, tlsConfig, timeout, clockwork.NewRealClock(), nil)
}

// probe is Probe, timed on clock; use, when set, runs on the connected
// client before the disconnect, and its error is the probe's.
func probe(ctx context.Context, broker, clientID string, tlsConfig func() (*tls.Config, error), timeout time.Duration, clock clockwork.Clock, use func(mqtt.Client) error) (ProbeResult, error) {
	var res ProbeResult
	u, err := ParseBroker(broker)
	if err != nil {
		return res, err
	}
	res.Broker = u.String()
	res.Addrs, err = net.DefaultResolver.LookupHost(ctx, u.Hostname())
	if err != nil {
		return res, fmt.Errorf("DNS: %w", err)
	}
	base, err := tlsConfig()
	if err != nil {
		return res, fmt.Errorf("%w: %w", errTLSConfig, err)
	}
	tc, err := sessionTLS(base, u)
	if err != nil {
		return res, err
	}
	s := &session{broker: res.Broker, tls: tc, ctx: ctx, now: clock.Now, timeout: timeout, lost: make(chan error, 1)}
	var peer *x509.Certificate
	open := func(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		start := clock.Now()
		c, err := s.open(uri, o)
		if err == nil {
			res.Handshake = clock.Since(start)
			if vc, ok := c.(*verdictConn); ok {
				if pc := vc.ConnectionState().PeerCertificates; len(pc) > 0 {
					peer = pc[0]
				}
			}
		}
		return c, err
	}
	opts := mqtt.NewClientOptions().AddBroker(res.Broker).SetClientID(clientID).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(timeout).SetCustomOpenConnectionFn(open)
	cli := mqtt.NewClient(opts)
	tok := cli.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		s.closeConn()
		if st := s.stageReached(); st != "" {
			return res, explainSilence(st, fmt.Errorf("no CONNACK in time"))
		}
		return res, fmt.Errorf("TCP connect to %s: no answer in time (stage reached: none)", u.Host)
	}
	if err := tok.Error(); err != nil {
		s.mu.Lock()
		dialErr := s.dialErr
		s.mu.Unlock()
		if dialErr != nil {
			return res, fmt.Errorf("TCP/TLS to %s: %w", u.Host, dialErr)
		}
		return res, fmt.Errorf("MQTT CONNECT: %w", s.explainConnect(err))
	}
	res.ConnackAfter = s.connackReceived()
	s.mu.Lock()
	res.TLSVersion = s.version
	s.mu.Unlock()
	res.Peer = peer
	var err2 error
	if use != nil {
		err2 = use(cli)
	}
	cli.Disconnect(100)
	return res, err2
}
