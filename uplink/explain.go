package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
)

// The words a technician reads when a broker refuses the gateway: which
// side refused, why, and what to check. They name the configuration keys
// (uplink.ca_file, uplink.server_name) because that is where the fix goes.

// Stages of a connection, for a broker that accepts TCP but never answers.
const (
	stageTCP  = "TCP" // connected, no TLS answer
	stageTLS  = "TLS" // handshake done, no CONNACK
	stageDone = "CONNACK"
)

// explainServerCert words a failure to verify the broker's certificate; nil
// when err is not one.
func explainServerCert(err error, serverName string) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) && ua.Cert != nil {
		return fmt.Errorf("the broker's certificate (%s) is signed by %s, which is not in uplink.ca_file: add that CA to the bundle, or check that this is the right broker: %w",
			subjectCN(ua.Cert.Subject.CommonName), subjectCN(ua.Cert.Issuer.CommonName), err)
	}
	var he x509.HostnameError
	if errors.As(err, &he) && he.Certificate != nil {
		names := he.Certificate.DNSNames
		for _, ip := range he.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
		has := "has no subjectAltName (Go ignores a CN-only name)"
		if len(names) > 0 {
			has = "is for " + strings.Join(names, ", ")
		}
		return fmt.Errorf("the broker's certificate %s, not %s: connect by one of those names, set uplink.server_name, or have the broker's certificate issued with subjectAltName DNS:%s: %w",
			has, he.Host, he.Host, err)
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) && ci.Cert != nil && ci.Reason == x509.Expired {
		return fmt.Errorf("the broker's certificate (%s) is expired or not yet valid (valid %s to %s; is this gateway's clock right?): %w",
			subjectCN(ci.Cert.Subject.CommonName), ci.Cert.NotBefore.Format("2006-01-02"), ci.Cert.NotAfter.Format("2006-01-02"), err)
	}
	return nil
}

// explainRejected words the broker refusing this gateway's certificate
// (an alert during or right after the handshake, or a reset). issuer is
// the issuer of the certificate the gateway presented, as "CN=…" ("" if
// none was).
func explainRejected(err error, issuer string) error {
	if issuer == "" {
		return fmt.Errorf("the broker asked for a client certificate and this gateway had none to give (uplink.cert_file): %w", err)
	}
	return fmt.Errorf("the broker rejected this gateway's certificate (issuer %s): is the broker's CA the one that signed it? (mosquitto: cafile; also check that the certificate is neither expired nor revoked): %w",
		issuer, err)
}

// explainSilence words a broker that accepted TCP but stopped answering.
func explainSilence(stage string, err error) error {
	switch stage {
	case stageTCP:
		return fmt.Errorf("the broker accepted TCP but sent no TLS answer (stage reached: TCP; a firewall, a proxy, or a listener that waits for something else?): %w", err)
	case stageTLS:
		return fmt.Errorf("the broker completed TLS but sent no CONNACK (stage reached: TLS; an overloaded broker, or an MQTT listener behind a TLS proxy that is down?): %w", err)
	}
	return err
}

func subjectCN(cn string) string {
	if cn == "" {
		return "a certificate without a CN"
	}
	return "CN=" + cn
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// recordIssuer wraps tc's client certificate choice so that set receives
// the issuer of the certificate offered in the handshake (as "CN=…"): the
// broker's refusal names it.
func recordIssuer(tc *tls.Config, set func(issuer string)) {
	get, certs := tc.GetClientCertificate, tc.Certificates
	tc.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := &tls.Certificate{}, error(nil)
		switch {
		case get != nil:
			c, err = get(cri)
		case len(certs) > 0:
			c = &certs[0]
		}
		if err == nil && c != nil && len(c.Certificate) > 0 {
			leaf := c.Leaf
			if leaf == nil {
				leaf, _ = x509.ParseCertificate(c.Certificate[0])
			}
			if leaf != nil {
				set(subjectCN(leaf.Issuer.CommonName))
			}
		}
		return c, err
	}
}
