package nginxtest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestProxyPassesIdentityKeyOverMutualTLS(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "key="+r.Header.Get("IDENTITY_KEY")+" proto="+r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(up.Close)
	for _, tc := range []struct {
		drop bool
		want string
	}{
		{false, "key=tok proto=https"},
		{true, "key= proto=https"},
	} {
		p := Start(t, Options{Upstream: strings.TrimPrefix(up.URL, "http://"), DropUnderscores: tc.drop})
		caPEM, err := os.ReadFile(p.PKI.CA.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		cert, err := tls.LoadX509KeyPair(p.PKI.Client.CertFile, p.PKI.Client.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		get := func(certs []tls.Certificate) (int, string) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
			defer c.CloseIdleConnections()
			req, _ := http.NewRequest("GET", p.URL+"/catalog", nil)
			req.Header["IDENTITY_KEY"] = []string{"tok"}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get([]tls.Certificate{cert}); code != 200 || body != tc.want {
			t.Errorf("drop=%v: %d %q, want %q", tc.drop, code, body, tc.want)
		}
		if code, _ := get(nil); code != 400 { // nginx: "No required SSL certificate was sent"
			t.Errorf("without a client certificate: %d, want nginx's 400", code)
		}
		p.Kill()
		p.Restart()
		if code, _ := get([]tls.Certificate{cert}); code != 200 {
			t.Errorf("after Kill and Restart: %d", code)
		}
	}
}
