package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/cityedge/cityedge/uplink"
)

// tlsConfig is mutual TLS with the given CA as the only trust anchor.
func tlsConfig(caFile, certFile, keyFile, host string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate %s / %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: host, MinVersion: tls.VersionTLS12}, nil
}

// send signs the command, subscribes to <prefix>/cmd/result, publishes to
// <prefix>/cmd (QoS 1, not retained) and waits for the answer with the same
// jti, which it returns decoded.
func send(ctx context.Context, o *options, stderr io.Writer) (map[string]any, error) {
	priv, err := loadSigningKey(o.signKey)
	if err != nil {
		return nil, err
	}
	args, err := buildArgs(o.cmd, o.file)
	if err != nil {
		return nil, err
	}
	u, err := uplink.ParseBroker(o.broker)
	if err != nil {
		return nil, usagef("%v", err)
	}
	tc, err := tlsConfig(o.ca, o.cert, o.keyFile, u.Hostname())
	if err != nil {
		return nil, err
	}
	jti, err := newJTI()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	token, err := sign(priv, o.kid, payload{Agent: o.agentID, Cmd: o.cmd, JTI: jti, IAT: now.Unix(), EXP: now.Add(o.ttl).Unix(), Args: args})
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	answers := make(chan []byte, 16)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mqtt.ERROR = slog.NewLogLogger(log.Handler(), slog.LevelError)
	clientID := o.clientID
	if clientID == "" {
		clientID = "cityedge-ctl-" + jti[:12]
	}
	copts := mqtt.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(clientID).
		SetTLSConfig(tc).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(false).
		SetConnectTimeout(o.timeout)
	c := mqtt.NewClient(copts)
	if err := wait(ctx, c.Connect(), "connect to "+u.String()); err != nil {
		return nil, err
	}
	defer c.Disconnect(250)

	resultTopic := o.prefix + "/cmd/result"
	sub := c.Subscribe(resultTopic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case answers <- append([]byte(nil), m.Payload()...):
		default: // a flood of other answers; ours comes again only if lost
		}
	})
	if err := wait(ctx, sub, "subscribe to "+resultTopic); err != nil {
		return nil, err
	}
	if err := wait(ctx, c.Publish(o.prefix+"/cmd", 1, false, token), "publish to "+o.prefix+"/cmd"); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "sent %s jti %s to %s/cmd; waiting up to %v for the answer\n", o.cmd, jti, o.prefix, o.timeout)
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer with jti %s on %s within %v (is remote.enabled set on %s, and its clock within max_age?)",
				jti, resultTopic, o.timeout, o.agentID)
		case b := <-answers:
			var res map[string]any
			if json.Unmarshal(b, &res) != nil {
				continue
			}
			if res["jti"] == jti {
				return res, nil
			}
		}
	}
}

// wait waits for a paho token, never longer than ctx allows.
func wait(ctx context.Context, t mqtt.Token, what string) error {
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if s, ok := t.(*mqtt.SubscribeToken); ok {
			for topic, q := range s.Result() {
				if q == 0x80 {
					return fmt.Errorf("%s: the broker refused the subscription to %s (check its ACL)", what, topic)
				}
			}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}
