// Command devbroker is the development MQTT broker behind `make demo`: an
// embedded mochi-mqtt broker that demands client certificates (mutual TLS)
// from a throwaway development PKI it creates, and prints every message that
// reaches it in a readable form. It is never linked into the agent and is not
// meant for production: a city runs its own broker (e.g. mosquitto) with the
// city's PKI.
//
// Usage:
//
//	devbroker [--pki DIR] [--listen 127.0.0.1:8883] [--client-cn gw-demo]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

func main() {
	pkiDir := flag.String("pki", ".demo/pki", "folder of the development PKI (created when it has no ca.pem)")
	listen := flag.String("listen", "127.0.0.1:8883", "address of the mutual-TLS MQTT listener")
	clientCN := flag.String("client-cn", "gw-demo", "common name of the client certificate to create (the agent id)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if err := run(*pkiDir, *listen, *clientCN, os.Stdout, log); err != nil {
		fmt.Fprintf(os.Stderr, "devbroker: %v\n", err)
		os.Exit(1)
	}
}

func run(pkiDir, listen, clientCN string, out io.Writer, log *slog.Logger) error {
	if _, err := os.Stat(filepath.Join(pkiDir, "ca.pem")); err != nil {
		if _, err := devpki.Dev(pkiDir, clientCN); err != nil {
			return err
		}
		fmt.Fprintf(out, "devbroker: created a throwaway development PKI in %s (CA, broker certificate for localhost, client certificate CN=%s)\n", pkiDir, clientCN)
	}
	tc, err := serverTLS(pkiDir)
	if err != nil {
		return err
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: log})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil { // mutual TLS already admits only our clients
		return err
	}
	if err := srv.AddHook(&printer{out: out}, nil); err != nil {
		return err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "mtls", Address: listen, TLSConfig: tc})); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	// Serve starts the listeners in the background and returns.
	if err := srv.Serve(); err != nil {
		return err
	}
	fmt.Fprintf(out, "devbroker: listening on mqtts://%s, client certificates required; Ctrl-C stops\n", listen)
	<-sigs
	return srv.Close()
}

func serverTLS(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		return nil, fmt.Errorf("broker certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate found", filepath.Join(dir, "ca.pem"))
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// printer shows each published message readably: SenML records one per line,
// status messages as a summary.
type printer struct {
	mqtt.HookBase
	out io.Writer
	mu  sync.Mutex
}

func (p *printer) ID() string { return "printer" }

func (p *printer) Provides(b byte) bool {
	return b == mqtt.OnPublished || b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}

func (p *printer) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	p.printf("client %s connected from %s\n", cl.ID, cl.Net.Remote)
}

func (p *printer) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if err == nil {
		p.printf("client %s disconnected\n", cl.ID)
		return
	}
	p.printf("client %s disconnected (%v)\n", cl.ID, err)
}

func (p *printer) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	switch {
	case strings.HasSuffix(pk.TopicName, "/readings"):
		p.printf("%s", formatPack(pk.TopicName, pk.Payload))
	case strings.HasSuffix(pk.TopicName, "/status"):
		p.printf("%s", formatStatus(pk.TopicName, pk.Payload))
	case strings.Contains(pk.TopicName, "/zones/"):
		p.printf("%s", formatZone(pk.TopicName, pk.Payload, pk.FixedHeader.Retain))
	default:
		p.printf("%s: %d bytes\n", pk.TopicName, len(pk.Payload))
	}
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format, args...)
}

type record struct {
	BN  string   `json:"bn"`
	BT  float64  `json:"bt"`
	N   string   `json:"n"`
	U   string   `json:"u"`
	V   *float64 `json:"v"`
	VB  *bool    `json:"vb"`
	T   float64  `json:"t"`
	Seq uint64   `json:"seq"`
}

func formatPack(topic string, payload []byte) string {
	var recs []record
	if err := json.Unmarshal(payload, &recs); err != nil {
		return fmt.Sprintf("%s: not SenML JSON (%v): %.80q\n", topic, err, payload)
	}
	var b strings.Builder
	noun := "records"
	if len(recs) == 1 {
		noun = "record"
	}
	fmt.Fprintf(&b, "── %s: %d %s\n", topic, len(recs), noun)
	var bn string
	var bt float64
	for i, r := range recs {
		if i == 0 {
			bn, bt = r.BN, r.BT
		}
		at := time.UnixMilli(int64((bt + r.T) * 1000)).Local().Format("15:04:05.000")
		val := ""
		switch {
		case r.VB != nil && *r.VB:
			val = "OCCUPIED"
		case r.VB != nil:
			val = "free"
		case r.V != nil:
			val = strconv.FormatFloat(*r.V, 'f', -1, 64) + " " + r.U // as sent: the agent sends the source's precision
		}
		fmt.Fprintf(&b, "   %s  %-40s %-18s seq %d\n", at, bn+r.N, val, r.Seq)
	}
	return b.String()
}

func formatStatus(topic string, payload []byte) string {
	var st map[string]any
	if err := json.Unmarshal(payload, &st); err != nil {
		return fmt.Sprintf("%s: %.120q\n", topic, payload)
	}
	keys := []string{"state", "backlog", "dropped", "version"}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if v, ok := st[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	sort.Strings(parts[1:])
	return fmt.Sprintf("── %s: %s\n", topic, strings.Join(parts, " "))
}

// formatZone shows a parking zone's retained message as one line:
// "── zone north: free 2  occupied 1  unknown 0  total 3  (seq 42, retained)".
func formatZone(topic string, payload []byte, retained bool) string {
	var z struct {
		Zone                           string
		Free, Occupied, Unknown, Total int
		Seq                            uint64
	}
	if err := json.Unmarshal(payload, &z); err != nil {
		return fmt.Sprintf("%s: not a zone message (%v): %.80q\n", topic, err, payload)
	}
	kind := "not retained!"
	if retained {
		kind = "retained"
	}
	return fmt.Sprintf("── zone %-8s free %d  occupied %d  unknown %d  total %d  (seq %d, %s)\n",
		z.Zone, z.Free, z.Occupied, z.Unknown, z.Total, z.Seq, kind)
}
