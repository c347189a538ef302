// Package nginxtest runs a real nginx (Debian's nginx-light or nginx
// package) for tests as the city's reverse proxy in front of Sentilo: TLS on
// a 127.0.0.1 port with mutual TLS (ssl_verify_client on) from a
// development PKI (certs/devpki), `underscores_in_headers on;` so that
// Sentilo's IDENTITY_KEY header passes, and X-Forwarded-Proto https to the
// plain-HTTP upstream. It is the server block README's Sentilo section
// shows.
//
// Tests that use it are skipped with "nginx not found: apt-get install
// nginx-light" when nginx is missing, and fail instead when
// CITYEDGE_REQUIRE_NGINX=1 (set by CI after installing it).
//
// nginx runs in the foreground with master_process off, one process, so
// Kill (SIGKILL by PID) leaves no orphaned worker holding the port.
package nginxtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cityedge/cityedge/certs/devpki"

	"github.com/cityedge/cityedge/scripts/testproc"
)

// RequireEnv names the environment variable that turns a missing nginx from
// a skip into a failure.
const RequireEnv = "CITYEDGE_REQUIRE_NGINX"

// Options configure a proxy.
type Options struct {
	// PKI provides the CA (trusted for client certificates) and the server
	// certificate. nil creates a fresh devpki.Dev with client CN "gw-test".
	PKI *devpki.Set
	// Upstream is the plain-HTTP host:port nginx proxies to.
	Upstream string
	// DropUnderscores leaves underscores_in_headers off (nginx's default),
	// to show what a proxy that drops IDENTITY_KEY does.
	DropUnderscores bool
}

// Proxy is a running nginx.
type Proxy struct {
	URL  string // https://127.0.0.1:PORT
	Port int
	PKI  *devpki.Set
	Dir  string

	t    testing.TB
	bin  string
	conf string
	log  *testproc.Tail

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Find returns the path of the nginx binary.
func Find() (string, error) {
	const std = "/usr/sbin/nginx"
	if _, err := os.Stat(std); err == nil {
		return std, nil
	}
	return exec.LookPath("nginx")
}

// Start runs nginx for the rest of the test; it is killed in t.Cleanup and
// its log printed if the test failed.
func Start(t testing.TB, opts Options) *Proxy {
	t.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("nginx not found (%s=1): apt-get install nginx-light", RequireEnv)
		}
		t.Skip("nginx not found: apt-get install nginx-light")
	}
	pki := opts.PKI
	if pki == nil {
		if pki, err = devpki.Dev(t.TempDir(), "gw-test"); err != nil {
			t.Fatalf("nginxtest: %v", err)
		}
	}
	p := &Proxy{PKI: pki, Dir: t.TempDir(), t: t, bin: bin, log: &testproc.Tail{Max: 1 << 20}}
	p.conf = filepath.Join(p.Dir, "nginx.conf")
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("nginx log (port %d):\n%s", p.Port, p.log.String())
		}
	})
	for i := 0; ; i++ {
		if p.Port, err = testproc.FreePort(); err != nil {
			t.Fatalf("nginxtest: %v", err)
		}
		p.URL = fmt.Sprintf("https://127.0.0.1:%d", p.Port)
		if err = os.WriteFile(p.conf, []byte(p.config(opts)), 0o600); err != nil {
			t.Fatalf("nginxtest: %v", err)
		}
		if err = p.start(); err == nil {
			return p
		}
		if i >= 4 || !strings.Contains(p.log.String(), "in use") {
			t.Fatalf("nginxtest: %v\nnginx log:\n%s", err, p.log.String())
		}
	}
}

func (p *Proxy) config(opts Options) string {
	underscores := "on"
	if opts.DropUnderscores {
		underscores = "off"
	}
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d ssl;
        server_name localhost;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        ssl_client_certificate %[5]s;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_timeout 75s;
        # Sentilo's credential header is IDENTITY_KEY: without this, nginx
        # drops it and every request is a 401 "Invalid credential null".
        underscores_in_headers %[6]s;
        location / {
            proxy_pass http://%[7]s;
            proxy_set_header Host $host;
            # Sentilo refuses providers that require HTTPS unless the proxy
            # says the request came over TLS (SSLAccessInterceptor).
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 5s;
            proxy_read_timeout 10s;
        }
    }
}
`, p.Dir, p.Port, p.PKI.Server.CertFile, p.PKI.Server.KeyFile, p.PKI.CA.CertFile, underscores, opts.Upstream)
}

func (p *Proxy) start() error {
	cmd := exec.Command(p.bin, "-p", p.Dir, "-c", p.conf, "-e", "stderr")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nginx: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			p.mu.Lock()
			p.cmd = nil
			p.mu.Unlock()
			return fmt.Errorf("nginx exited at start (%v)", cmd.ProcessState)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("nginx does not accept connections on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill ends nginx with SIGKILL (by its PID) and waits for it.
func (p *Proxy) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart starts nginx again on the same port (killing it first if it
// runs). Call it from the test goroutine.
func (p *Proxy) Restart() {
	p.t.Helper()
	p.Kill()
	var err error
	for range 50 { // the port may linger briefly after SIGKILL
		if err = p.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("nginxtest: restart on port %d: %v\nnginx log:\n%s", p.Port, err, p.log.String())
}

// Log returns nginx's log so far.
func (p *Proxy) Log() string { return p.log.String() }
