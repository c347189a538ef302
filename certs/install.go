package certs

import (
	"fmt"
	"path/filepath"
)

// files returns the CA, certificate and key paths the store reads now.
func (s *Store) files() (ca, cert, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.CAFile, s.opts.CertFile, s.opts.KeyFile
}

// Install makes the certificate and key at certFile and keyFile the live
// client pair, and the files that Reload, Watch and Status follow from then
// on, if they form a set that is valid now with the CA bundle: the key
// belongs to the certificate, the certificate chains to the CA for client
// authentication, and it is within its dates. Otherwise nothing changes and
// the error names the cause. It is a hot reload onto other files (the remote
// install_cert command installs a renewed pair under agent.state_dir/certs
// while the configured uplink.cert_file stays as it is); reconnect the
// uplink afterwards so that the next handshake presents the new pair.
func (s *Store) Install(certFile, keyFile string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	ca, _, _ := s.files()
	t := &Store{opts: s.opts, log: s.log, env: s.env}
	t.opts.CAFile, t.opts.CertFile, t.opts.KeyFile = ca, certFile, keyFile
	if filepath.Clean(certFile) == filepath.Clean(keyFile) {
		return fmt.Errorf("certs: install: certificate and key both name %s", certFile)
	}
	now := s.env.now()
	m, err := t.read(now)
	if err == nil {
		err = m.usableAt(now)
	}
	if err != nil {
		return fmt.Errorf("certs: install: %w", err)
	}
	s.live.Store(m)
	s.mu.Lock()
	s.opts.CertFile, s.opts.KeyFile = certFile, keyFile
	s.lastErr = nil
	s.lastReload = now
	s.mu.Unlock()
	return nil
}
