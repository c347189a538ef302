package certs

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Configuration keys, used in messages so an operator knows what to edit.
const (
	keyCA   = "uplink.ca_file"
	keyCert = "uplink.cert_file"
	keyKey  = "uplink.key_file"
)

// DefaultWarnBefore is the expiry warning threshold when Options.WarnBefore
// is zero.
const DefaultWarnBefore = 30 * 24 * time.Hour

// Errors that TLSConfig and the handshake wrap when the live set cannot be
// used because of the time; the uplink waits (readings stay on disk) until
// the clock or the files are right.
var (
	ErrExpired     = errors.New("certificate has expired")
	ErrNotYetValid = errors.New("certificate is not yet valid")
)

// Options says where the TLS material is and how the broker is checked.
type Options struct {
	CAFile, CertFile, KeyFile string
	ServerName                string        // optional override of the broker host name check (uplink.server_name)
	ALPN                      []string      // optional (uplink.alpn)
	SystemRoots               bool          // also trust system roots (uplink.system_roots); default: the CA bundle only
	WarnBefore                time.Duration // expiry warning threshold (0 → DefaultWarnBefore)
	// ServiceUID, when set, is the user the service runs as: the private key
	// must be owned by it. Unset means the user running this process. A
	// technician's --diagnose as root sets it to the owner of agent.state_dir
	// so that the key is judged as the service would judge it.
	ServiceUID *int
	// ExpectCN, when set, is the common name the client certificate should
	// carry (agent.id): brokers that take the CN as the user name
	// (mosquitto's use_identity_as_username) apply another gateway's ACLs
	// to a certificate whose CN differs. A difference is a warning in
	// Status, never a refusal.
	ExpectCN string
	Logger   *slog.Logger
}

// Store holds the live, validated TLS material and swaps it when the files
// change. It is safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger
	env  env
	live atomic.Pointer[material]

	reloadMu sync.Mutex // serialises reloads

	mu         sync.Mutex // guards the fields below
	lastErr    error
	lastReload time.Time

	// openStamps are the files as Open judged them when no usable set could
	// be read, so that Watch tries any change made since, even one made
	// before Watch started.
	openStamps [3]stamp
}

// env is what the store takes from the system, replaceable in tests: a
// gateway without a real-time clock, a file owned by someone else.
type env struct {
	now  func() time.Time
	euid int
}

// users is who reads the files and who must own the key.
func (s *Store) users() users {
	u := users{euid: s.env.euid, owner: s.env.euid}
	if s.opts.ServiceUID != nil {
		u.owner = *s.opts.ServiceUID
	}
	return u
}

// material is one validated set; it is never modified once published.
type material struct {
	cert   *tls.Certificate    // what the handshake presents; Leaf is set
	chain  []*x509.Certificate // verified chain of the client certificate, leaf first
	srcs   []source            // file each chain element came from
	cas    []*x509.Certificate // the CA bundle
	roots  *x509.CertPool      // what the broker is verified against
	stamps [3]stamp            // the files as read (CA, cert, key)
}

// Status is the certificate part of the status message and of --diagnose.
type Status struct {
	ClientSubject   string    `json:"client_subject"`
	ClientSerial    string    `json:"client_serial"` // upper-case hex, as openssl prints it
	ClientNotAfter  time.Time `json:"client_not_after"`
	CANotAfter      time.Time `json:"ca_not_after"` // earliest end among the client certificate's issuers
	ClientDaysLeft  int       `json:"client_days_left"`
	CADaysLeft      int       `json:"ca_days_left"`
	Warning         string    `json:"warning,omitempty"` // set below WarnBefore, or when the set is unusable
	LastReloadError string    `json:"last_reload_error,omitempty"`
	LastReload      time.Time `json:"last_reload"` // when the live set was read
	Expired         bool      `json:"expired"`     // the live set is expired or not yet valid: the uplink waits
	// Unusable is set when no valid set was ever read (missing, unreadable,
	// mismatched files, a key with loose permissions or a foreign owner):
	// the uplink stays down, sampling goes on, and Warning says what to fix.
	Unusable bool `json:"unusable,omitempty"`
}

// ErrNoUsableSet is wrapped by TLSConfig while no valid set has been read
// since Open: the uplink waits, readings stay buffered, and the set is
// picked up as soon as valid files appear (Watch or Reload).
var ErrNoUsableSet = errors.New("no usable certificate set")

// Load reads and validates the CA bundle, the client certificate and its key.
// An expired or not yet valid certificate is not an error here, so that the
// agent samples and buffers from its first second (a gateway may boot with its
// clock in 1970); TLSConfig refuses it until a valid set arrives. Every other
// problem is an error that names the file, the cause and the fix.
func Load(opts Options) (*Store, error) {
	return load(opts, env{now: time.Now, euid: os.Geteuid()})
}

func load(opts Options, e env) (*Store, error) {
	s, err := open(opts, e)
	if err != nil {
		return nil, err
	}
	if s.live.Load() == nil {
		return nil, fmt.Errorf("certs: %w", s.lastErr)
	}
	return s, nil
}

// Open is Load for the running agent: TLS material that is wrong at start
// (missing, unreadable, mismatched, a key with loose permissions or a
// foreign owner) must stop the uplink, never sampling. Open fails only for
// options that no file can fix (a configuration error); otherwise it returns
// a Store whose TLSConfig wraps ErrNoUsableSet, with the reason and the fix
// in Status and the log, until Watch or Reload finds a valid set.
func Open(opts Options) (*Store, error) {
	return open(opts, env{now: time.Now, euid: os.Geteuid()})
}

func open(opts Options, e env) (*Store, error) {
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if opts.WarnBefore == 0 {
		opts.WarnBefore = DefaultWarnBefore
	}
	opts.ALPN = slices.Clone(opts.ALPN)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, log: log, env: e}
	now := e.now()
	s.openStamps = statAll([3]string{opts.CAFile, opts.CertFile, opts.KeyFile})
	m, err := s.read(now)
	if err != nil {
		s.lastErr = err
		s.lastReload = now
		log.Error("TLS material unusable: the uplink stays down, readings are buffered until it is fixed", "err", err)
		return s, nil
	}
	s.live.Store(m)
	s.lastReload = now
	if st := s.Status(); st.Warning != "" {
		log.Warn("client certificate needs attention", "warning", st.Warning)
	}
	return s, nil
}

func (o Options) check() error {
	for _, f := range []struct{ key, path string }{{keyCA, o.CAFile}, {keyCert, o.CertFile}, {keyKey, o.KeyFile}} {
		if f.path == "" {
			return fmt.Errorf("%s is not set", f.key)
		}
	}
	if filepath.Clean(o.CertFile) == filepath.Clean(o.KeyFile) {
		return fmt.Errorf("%s and %s both name %s; keep the key in a file of its own (mode 0600)", keyCert, keyKey, o.KeyFile)
	}
	if o.WarnBefore < 0 {
		return fmt.Errorf("expiry warning threshold %v is negative", o.WarnBefore)
	}
	for _, p := range o.ALPN {
		if p == "" || len(p) > 255 {
			return fmt.Errorf("uplink.alpn: protocol name %q must be 1 to 255 bytes long", p)
		}
	}
	return nil
}

// read reads and validates all three files. Time is judged separately
// (usableAt), except that the chain must be valid at some moment of the
// client certificate's life.
func (s *Store) read(now time.Time) (*material, error) {
	caFile, certFile, keyFile := s.files()
	srcCA, srcCert, srcKey := source{keyCA, caFile}, source{keyCert, certFile}, source{keyKey, keyFile}

	u := s.users()
	caPEM, stCA, err := readFile(srcCA, false, u)
	if err != nil {
		return nil, err
	}
	cas, err := parseCertificates(caPEM)
	if err != nil {
		return nil, srcCA.errorf("%w", err)
	}
	certPEM, stCert, err := readFile(srcCert, false, u)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, srcCert.errorf("%w", err)
	}
	keyPEM, stKey, err := readFile(srcKey, true, u)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, srcKey.errorf("%w", err)
	}

	leaf := certs[0]
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, srcKey.errorf("does not belong to the certificate in %s (%s, serial %X); install the key this certificate was issued for, or the certificate issued for this key",
			srcCert, leaf.Subject, leaf.SerialNumber)
	}
	if leaf.IsCA {
		return nil, srcCert.errorf("first certificate (%s) is a CA certificate; the gateway's own client certificate must come first", leaf.Subject)
	}
	if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() < minRSABits {
		return nil, srcKey.errorf("RSA key of %d bits is too weak (at least %d); enroll a new P-256 key", k.N.BitLen(), minRSABits)
	}

	chain, err := verifyChain(leaf, certs[1:], cas, now)
	if err != nil {
		return nil, chainError(srcCert, srcCA, leaf, err)
	}
	srcs := make([]source, len(chain))
	for i, c := range chain {
		srcs[i] = srcCA
		if slices.ContainsFunc(certs, func(x *x509.Certificate) bool { return x.Equal(c) }) {
			srcs[i] = srcCert
		}
	}

	var roots *x509.CertPool
	if s.opts.SystemRoots {
		if roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("uplink.system_roots is set but the system root store cannot be read: %w", err)
		}
	} else {
		roots = x509.NewCertPool()
	}
	for _, c := range cas {
		roots.AddCert(c)
	}

	ders := make([][]byte, len(certs))
	for i, c := range certs {
		ders[i] = c.Raw
	}
	return &material{
		cert:   &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf},
		chain:  chain,
		srcs:   srcs,
		cas:    cas,
		roots:  roots,
		stamps: [3]stamp{stCA, stCert, stKey},
	}, nil
}

// verifyChain verifies that leaf chains to one of cas for client
// authentication. It checks structure, not the present time: it tries now,
// and if that fails, moments within the leaf's validity, so that a gateway
// whose clock is wrong, or a set that merely expired, is told apart from a
// certificate of a foreign CA.
func verifyChain(leaf *x509.Certificate, intermediates, cas []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range cas {
		opts.Roots.AddCert(c)
	}
	for _, c := range intermediates {
		opts.Intermediates.AddCert(c)
	}
	mid := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	var errs [4]error
	for i, t := range []time.Time{now, mid, leaf.NotBefore, leaf.NotAfter} {
		opts.CurrentTime = t
		chains, err := leaf.Verify(opts)
		if err == nil {
			return chains[0], nil
		}
		errs[i] = err
	}
	// When the leaf itself is out of its dates now, the error at now is only
	// about time and would hide the real cause: report the one at mid-life.
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, errs[1]
	}
	return nil, errs[0]
}

func chainError(srcCert, srcCA source, leaf *x509.Certificate, err error) error {
	var ua x509.UnknownAuthorityError
	var inv x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return srcCert.errorf("certificate %s (serial %X) was issued by %s, which is not a CA in %s; install a certificate issued by that CA, or the CA bundle that holds its issuer: %w",
			leaf.Subject, leaf.SerialNumber, leaf.Issuer, srcCA, err)
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return srcCert.errorf("certificate %s may not be used for TLS client authentication (extended key usage); ask the PKI for a client certificate: %w",
			leaf.Subject, err)
	default:
		return srcCert.errorf("certificate %s does not chain to %s: %w", leaf.Subject, srcCA, err)
	}
}

// timeError says which certificate is out of its dates and what to do; it
// unwraps to ErrExpired or ErrNotYetValid.
type timeError struct {
	msg  string
	kind error
}

func (e *timeError) Error() string { return e.msg }
func (e *timeError) Unwrap() error { return e.kind }

// usableAt reports whether every certificate of the chain is within its dates.
func (m *material) usableAt(now time.Time) error {
	for i, c := range m.chain {
		switch {
		case now.Before(c.NotBefore):
			return &timeError{kind: ErrNotYetValid, msg: fmt.Sprintf(
				"%s: %s (serial %X) is valid only from %s, but the gateway clock says %s; check the clock (NTP) or install a certificate valid now",
				m.srcs[i], m.describe(i), c.SerialNumber, date(c.NotBefore), date(now))}
		case now.After(c.NotAfter):
			return &timeError{kind: ErrExpired, msg: fmt.Sprintf(
				"%s: %s (serial %X) expired on %s; install a renewed one there (it is picked up without a restart)",
				m.srcs[i], m.describe(i), c.SerialNumber, date(c.NotAfter))}
		}
	}
	return nil
}

func (m *material) describe(i int) string {
	if i == 0 {
		return "client certificate " + m.chain[i].Subject.String()
	}
	return "CA certificate " + m.chain[i].Subject.String()
}

// issuer returns the issuer of the client certificate that expires first
// (the trust anchor for a self-signed client certificate), and its file.
func (m *material) issuer() (*x509.Certificate, source) {
	if len(m.chain) == 1 {
		return m.chain[0], m.srcs[0]
	}
	best := 1
	for i := 2; i < len(m.chain); i++ {
		if m.chain[i].NotAfter.Before(m.chain[best].NotAfter) {
			best = i
		}
	}
	return m.chain[best], m.srcs[best]
}

func date(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// TLSConfig returns the configuration for one connection attempt. The client
// certificate is fetched on each handshake, so a reloaded certificate is used
// even by a configuration handed out before the reload; the CA bundle is
// fixed per configuration, so call TLSConfig for every attempt. It returns an
// error wrapping ErrExpired or ErrNotYetValid when the live set cannot be
// used now.
func (s *Store) TLSConfig() (*tls.Config, error) {
	m := s.live.Load()
	if m == nil {
		return nil, s.noSet()
	}
	if err := m.usableAt(s.env.now()); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              m.roots.Clone(),
		ServerName:           s.opts.ServerName,
		NextProtos:           slices.Clone(s.opts.ALPN),
		GetClientCertificate: s.clientCertificate,
	}, nil
}

// clientCertificate is the GetClientCertificate hook: the live certificate,
// unless it went out of its dates since the configuration was made, in which
// case the handshake fails and nothing is sent.
func (s *Store) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	m := s.live.Load()
	if m == nil {
		return nil, s.noSet()
	}
	if err := m.usableAt(s.env.now()); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return m.cert, nil
}

// noSet is TLSConfig's error while no valid set was ever read.
func (s *Store) noSet() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Errorf("certs: %w: %w", ErrNoUsableSet, s.lastErr)
}

// Reload reads the three files again and, if the new set is complete,
// consistent and valid now, makes it live for the next handshake. Otherwise
// the current set stays live, and the error, which names the file and the
// cause, is returned and kept for Status. clientChanged reports whether the
// client certificate differs from the one before, so that the uplink can
// reconnect with it.
func (s *Store) Reload() (clientChanged bool, err error) {
	clientChanged, _, err = s.reload()
	return clientChanged, err
}

func (s *Store) reload() (clientChanged, caChanged bool, err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	now := s.env.now()
	m, err := s.read(now)
	if err == nil {
		err = m.usableAt(now)
	}
	old := s.live.Load()
	if err != nil {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		if old == nil {
			return false, false, fmt.Errorf("certs: still no usable certificate set, the uplink stays down: %w", err)
		}
		return false, false, fmt.Errorf("certs: new certificate set rejected, still using %s (serial %X): %w",
			old.chain[0].Subject, old.chain[0].SerialNumber, err)
	}
	s.live.Store(m)
	s.mu.Lock()
	s.lastErr = nil
	s.lastReload = now
	s.mu.Unlock()
	if old == nil {
		return true, true, nil
	}
	return !slices.EqualFunc(old.cert.Certificate, m.cert.Certificate, bytes.Equal),
		!slices.EqualFunc(old.cas, m.cas, (*x509.Certificate).Equal), nil
}

// Status reports the live set, days left, warnings and the last reload error.
func (s *Store) Status() Status {
	m := s.live.Load()
	now := s.env.now()
	s.mu.Lock()
	lastErr, lastReload := s.lastErr, s.lastReload
	s.mu.Unlock()
	if m == nil {
		return Status{Unusable: true, Expired: true, Warning: lastErr.Error(), LastReloadError: lastErr.Error(), LastReload: lastReload}
	}

	leaf := m.chain[0]
	ca, caSrc := m.issuer()
	st := Status{
		ClientSubject:  leaf.Subject.String(),
		ClientSerial:   fmt.Sprintf("%X", leaf.SerialNumber),
		ClientNotAfter: leaf.NotAfter,
		CANotAfter:     ca.NotAfter,
		ClientDaysLeft: daysLeft(leaf.NotAfter, now),
		CADaysLeft:     daysLeft(ca.NotAfter, now),
		LastReload:     lastReload,
	}
	if lastErr != nil {
		st.LastReloadError = lastErr.Error()
	}
	if err := m.usableAt(now); err != nil {
		st.Expired = true
		st.Warning = err.Error()
		return st
	}
	var warn []string
	_, certFile, keyFile := s.files()
	if leaf.NotAfter.Sub(now) < s.opts.WarnBefore {
		warn = append(warn, fmt.Sprintf("client certificate %s expires in %d days (%s); install the renewed certificate and key at %s and %s",
			leaf.Subject, st.ClientDaysLeft, date(leaf.NotAfter), certFile, keyFile))
	}
	if ca != leaf && ca.NotAfter.Sub(now) < s.opts.WarnBefore {
		warn = append(warn, fmt.Sprintf("CA certificate %s expires in %d days (%s); the city's PKI must roll it over and install the new one in %s",
			ca.Subject, st.CADaysLeft, date(ca.NotAfter), caSrc))
	}
	if cn := leaf.Subject.CommonName; s.opts.ExpectCN != "" && cn != s.opts.ExpectCN {
		warn = append(warn, fmt.Sprintf("client certificate CN=%q is not agent.id %q: a broker that takes the CN as user name applies the wrong ACLs; issue a certificate with CN=%s",
			cn, s.opts.ExpectCN, s.opts.ExpectCN))
	}
	st.Warning = strings.Join(warn, "; ")
	return st
}

// daysLeft is the whole number of days from now to t, rounded down (so it is
// negative once t has passed).
func daysLeft(t, now time.Time) int {
	const day = 24 * time.Hour
	if d := t.Sub(now); d > minDuration && d < maxDuration {
		n := d / day
		if d%day < 0 {
			n--
		}
		return int(n)
	}
	// Sub saturates beyond ±292 years (a certificate "valid until 9999").
	secs := t.Unix() - now.Unix()
	n := secs / 86400
	if secs%86400 < 0 {
		n--
	}
	return int(n)
}

const (
	minDuration time.Duration = -1 << 63
	maxDuration time.Duration = 1<<63 - 1
)
