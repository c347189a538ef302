package certs

import (
	"crypto/tls"
	"testing"
)

// BenchmarkReload measures reading and validating the three files, the work
// Watch does once per detected change.
func BenchmarkReload(b *testing.B) {
	s := mustLoad(b, newFixture(b).opts)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Reload(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTLSConfig measures what each connection attempt pays.
func BenchmarkTLSConfig(b *testing.B) {
	s := mustLoad(b, newFixture(b).opts)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.TLSConfig(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetClientCertificate measures the per-handshake hook.
func BenchmarkGetClientCertificate(b *testing.B) {
	s := mustLoad(b, newFixture(b).opts)
	cri := &tls.CertificateRequestInfo{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.clientCertificate(cri); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWatchPoll measures one poll of the three files without a change.
func BenchmarkWatchPoll(b *testing.B) {
	f := newFixture(b)
	paths := [3]string{f.opts.CAFile, f.opts.CertFile, f.opts.KeyFile}
	b.ReportAllocs()
	for b.Loop() {
		statAll(paths)
	}
}
