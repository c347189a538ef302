package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	defaultTTL  = 5 * time.Minute
	defaultWait = 30 * time.Second
)

// The CLI's command names and their names on the wire.
var wireCmd = map[string]string{
	"diagnose":     "diagnose",
	"status":       "status",
	"config":       "config",
	"csr":          "csr",
	"install-cert": "install_cert",
}

// agentID is README's rule for agent.id.
var agentID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// options is a parsed command line for sending a command.
type options struct {
	signKey  string // --key
	broker   string
	ca       string
	cert     string
	keyFile  string
	site     string
	agent    string // --agent, overrides the id derived from the target
	ttl      time.Duration
	timeout  time.Duration
	kid      bool
	target   string
	cmd      string // wire name
	file     string // config or install-cert argument
	prefix   string // resolved topic prefix
	agentID  string // resolved agent id
	clientID string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "keygen" {
		if err := keygen(args[1:], stdout); err != nil {
			fmt.Fprintln(stderr, "cityedge-ctl keygen:", err)
			var u usageError
			if errors.As(err, &u) {
				return exitUsage
			}
			return exitFailed
		}
		return exitOK
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "cityedge-ctl:", err)
		}
		return exitUsage
	}
	res, err := send(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "cityedge-ctl:", err)
		var u usageError
		if errors.As(err, &u) {
			return exitUsage
		}
		return exitFailed
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintln(stdout, string(out))
	if ok, _ := res["ok"].(bool); !ok {
		return exitFailed
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("cityedge-ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.signKey, "key", "", "the operators' Ed25519 signing key (PKCS#8 PEM, from keygen)")
	fs.StringVar(&o.broker, "broker", "", "broker URL, mqtts://host:port")
	fs.StringVar(&o.ca, "ca", "", "PEM bundle of the CA(s) that sign the broker's certificate")
	fs.StringVar(&o.cert, "cert", "", "the operator's MQTT client certificate (PEM)")
	fs.StringVar(&o.keyFile, "key-file", "", "its private key (PEM)")
	fs.StringVar(&o.site, "site", "", "the gateway's agent.site, for the default topic prefix cityedge/<site>/<id>")
	fs.StringVar(&o.agent, "agent", "", "agent id to address when the target is a topic prefix (default: its last level)")
	fs.DurationVar(&o.ttl, "ttl", defaultTTL, "validity of the signed command (exp - iat); at most the gateway's remote.max_age")
	fs.DurationVar(&o.timeout, "timeout", defaultWait, "how long to wait for the answer")
	fs.BoolVar(&o.kid, "kid", true, "name the signing key (its RFC 7638 thumbprint) in the JWS header")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage:
  cityedge-ctl keygen --out NAME
  cityedge-ctl --key ops.key --broker mqtts://host:port --ca CA --cert CERT --key-file KEY [flags]
      <agent-id|topic_prefix> diagnose|status|config FILE|csr|install-cert FILE
flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"key", o.signKey}, {"broker", o.broker}, {"ca", o.ca}, {"cert", o.cert}, {"key-file", o.keyFile}} {
		if f.v == "" {
			return nil, usagef("--%s is required", f.name)
		}
	}
	if o.ttl <= 0 || o.timeout <= 0 {
		return nil, usagef("--ttl and --timeout must be positive")
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return nil, usagef("want <agent-id|topic_prefix> and a command (diagnose, status, config FILE, csr, install-cert FILE)")
	}
	o.target = rest[0]
	w, ok := wireCmd[rest[1]]
	if !ok {
		return nil, usagef("unknown command %q (diagnose, status, config FILE, csr, install-cert FILE)", rest[1])
	}
	o.cmd = w
	wantFile := w == "config" || w == "install_cert"
	switch {
	case wantFile && len(rest) != 3:
		return nil, usagef("%s takes one FILE", rest[1])
	case !wantFile && len(rest) != 2:
		return nil, usagef("%s takes no argument", rest[1])
	case wantFile:
		o.file = rest[2]
	}
	var err error
	if o.prefix, o.agentID, err = resolveTarget(o.target, o.site, o.agent); err != nil {
		return nil, err
	}
	return o, nil
}

// resolveTarget turns <agent-id|topic_prefix> into the topic prefix and the
// agent id to put in the payload. A target without "/" is an agent id and
// gets README's default prefix (cityedge/<site>/<id>, or cityedge/<id>
// without a site); a target with "/" is the gateway's uplink.topic_prefix,
// and the agent id is --agent or the prefix's last level.
func resolveTarget(target, site, agent string) (prefix, id string, err error) {
	if strings.ContainsAny(target, "+#") || strings.HasPrefix(target, "/") || strings.HasSuffix(target, "/") || target == "" {
		return "", "", usagef("target %q is neither an agent id nor a topic prefix", target)
	}
	if !strings.Contains(target, "/") {
		id = target
		if !agentID.MatchString(id) {
			return "", "", usagef("agent id %q: letters, digits, '.', '_', '-' (1-64)", id)
		}
		if agent != "" && agent != id {
			return "", "", usagef("--agent %q contradicts the target %q", agent, id)
		}
		if site != "" {
			return "cityedge/" + site + "/" + id, id, nil
		}
		return "cityedge/" + id, id, nil
	}
	if site != "" {
		return "", "", usagef("--site applies to an agent id target, not to a topic prefix")
	}
	id = agent
	if id == "" {
		id = target[strings.LastIndex(target, "/")+1:]
	}
	if !agentID.MatchString(id) {
		return "", "", usagef("agent id %q (from the topic prefix; give --agent): letters, digits, '.', '_', '-' (1-64)", id)
	}
	return target, id, nil
}

// payload is the signed command payload (docs/REMOTE.md), members in the
// contract's order.
type payload struct {
	Agent string          `json:"agent"`
	Cmd   string          `json:"cmd"`
	JTI   string          `json:"jti"`
	IAT   int64           `json:"iat"`
	EXP   int64           `json:"exp"`
	Args  json.RawMessage `json:"args,omitempty"`
}

// buildArgs reads FILE for config (args.toml) and install_cert (args.cert).
func buildArgs(cmd, file string) (json.RawMessage, error) {
	member := map[string]string{"config": "toml", "install_cert": "cert"}[cmd]
	if member == "" {
		return json.RawMessage("{}"), nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if cmd == "install_cert" {
		if b, _ := pem.Decode(data); b == nil || b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", file)
		}
	}
	return json.Marshal(map[string]string{member: string(data)})
}

// newJTI returns a random command id (128 bits, hex).
func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// sign returns the JWS compact serialization of p signed with priv:
// protected header {"alg":"EdDSA"} or {"alg":"EdDSA","kid":…}.
func sign(priv ed25519.PrivateKey, withKid bool, p payload) (string, error) {
	hdr := map[string]string{"alg": "EdDSA"}
	if withKid {
		hdr["kid"] = keyID(priv.Public().(ed25519.PublicKey))
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(body)
	return in + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(in))), nil
}

// keyID is the RFC 7638 thumbprint of an Ed25519 key (RFC 8037 section
// 2): SHA-256 over {"crv":"Ed25519","kty":"OKP","x":…}, base64url.
func keyID(pub ed25519.PublicKey) string {
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// loadSigningKey reads a PKCS#8 PEM Ed25519 private key. It refuses a file
// others can read.
func loadSigningKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %v; it must not be readable by group or others (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM \"PRIVATE KEY\" block (PKCS#8)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not an Ed25519 key", path, k)
	}
	return priv, nil
}

// keygen writes NAME.key (PKCS#8 PEM, 0600) and NAME.pub (PKIX PEM, 0644,
// for the gateways' remote.trusted_keys). It never overwrites a file.
func keygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "file name stem: writes STEM.key and STEM.pub")
	if err := fs.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if *out == "" || fs.NArg() != 0 {
		return usagef("usage: cityedge-ctl keygen --out NAME")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	keyPath, pubPath := *out+".key", *out+".pub"
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (private, keep it offline) and %s (add it to the gateways' remote.trusted_keys)\nkid %s\n",
		keyPath, pubPath, keyID(pub))
	return nil
}

// writeNew creates path with data, failing if it exists; the mode is set
// before any byte is written.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil { // the umask may have narrowed it; never widen beyond perm
		f.Close()
		os.Remove(path)
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
