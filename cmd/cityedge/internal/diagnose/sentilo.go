package diagnose

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cityedge/cityedge/cmd/cityedge/internal/agent"
	"github.com/cityedge/cityedge/cmd/cityedge/internal/config"
)

// diagnoseSentilo checks the Sentilo output when [sentilo] is configured:
// TLS with the client certificate to the city's proxy (naming which side
// refused), the token file, then GET /catalog: PASS when the provider may
// write and every id is listed, WARN naming each missing id. With a running
// agent, each held sensor is a WARN with its reason and count. The token
// never appears.
func diagnoseSentilo(ctx context.Context, cfg *config.Config, live *agent.LiveState, r *report) {
	s := cfg.Sentilo
	if !s.Enabled() {
		return
	}
	quiet := slog.New(slog.DiscardHandler)
	r.add("sentilo", "token_file", Pass, "%s: one token, readable only by its owner", s.TokenFile)
	tc, _, err := agent.SentiloTLS(cfg, quiet)
	if err != nil {
		r.add("sentilo", "tls", Fail, "cannot use the TLS files for %s: %v", s.URL, err)
		return
	}
	var wg sync.WaitGroup
	timeout := s.Timeout.D() + 2*time.Second
	r.async(ctx, &wg, "sentilo", "tls", timeout, func(ctx context.Context) (string, string) {
		return sentiloHandshake(ctx, s.URL, tc)
	})
	wg.Wait()
	r.async(ctx, &wg, "sentilo", "catalog", timeout, func(ctx context.Context) (string, string) {
		c, err := agent.NewSentiloClient(cfg, tc, quiet)
		if err != nil {
			return Fail, err.Error()
		}
		defer c.Close()
		ids := make([]string, 0, len(s.IDMap()))
		for _, id := range s.IDMap() {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		rep, err := c.CheckCatalog(ctx, ids)
		if err != nil {
			return Fail, err.Error()
		}
		return rep.Level, rep.Detail
	})
	wg.Wait()
	if live == nil {
		return
	}
	st, ok := live.Outputs["sentilo"]
	if !ok {
		return
	}
	if st.Gate != "" {
		r.add("sentilo", "delivery", Warn, "not sending until %s: %s", st.GateUntil.Format(time.RFC3339), st.Gate)
	} else {
		r.add("sentilo", "delivery", Pass, "%d readings acked, %d set aside, %d resent after an unknown outcome; progress seq %d",
			st.Acked, st.SetAside, st.Resent, st.Progress)
	}
	for _, h := range st.Held {
		what := "not registered in the city's catalog"
		if h.Reason == "404.2" {
			what = "not online in the city's catalog"
		}
		r.add("sentilo", h.ID, Warn, "sensor %s %s (%s): %d readings held in the buffer, retried at %s",
			h.Sensor, what, h.Reason, h.Readings, h.NextTry.Format(time.RFC3339))
	}
}

// sentiloHandshake runs TLS with the client certificate to the proxy and
// one request, so that a refused client certificate shows (with TLS 1.3
// the server refuses it after the handshake).
func sentiloHandshake(ctx context.Context, raw string, tc *tls.Config) (string, string) {
	u, err := url.Parse(raw)
	if err != nil {
		return Fail, err.Error()
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{Config: tc}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err == nil {
		defer conn.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		_, err = fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Host)
		var answer []byte
		if err == nil {
			answer, err = io.ReadAll(io.LimitReader(conn, 4096))
			if len(answer) > 0 {
				err = nil
			}
		}
		// nginx finishes the handshake and answers 400 "The SSL
		// certificate error" / "No required SSL certificate was sent"
		// when ssl_verify_client refuses the certificate.
		if a := string(answer); err == nil && (strings.Contains(a, "SSL certificate error") || strings.Contains(a, "No required SSL certificate")) {
			return Fail, fmt.Sprintf("%s: the proxy refused our client certificate (does its ssl_client_certificate hold the CA that signed %s?)", host, "sentilo.cert_file")
		}
		if err == nil {
			v := conn.(*tls.Conn).ConnectionState()
			return Pass, fmt.Sprintf("%s: TLS %s with the client certificate; the proxy accepted it", host, tls.VersionName(v.Version))
		}
	}
	var verr *tls.CertificateVerificationError
	var netErr net.Error
	switch {
	case errors.As(err, &verr):
		return Fail, fmt.Sprintf("%s: we refused the proxy's certificate (check sentilo.ca_file / sentilo.server_name): %v", host, verr.Err)
	case strings.Contains(err.Error(), "remote error"):
		return Fail, fmt.Sprintf("%s: the proxy refused our client certificate (does its ssl_client_certificate trust our CA?): %v", host, err)
	case errors.As(err, &netErr):
		return Fail, fmt.Sprintf("%s: cannot reach the proxy: %v", host, err)
	}
	return Fail, fmt.Sprintf("%s: %v", host, err)
}
