package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// maxFileSize bounds what is read from any of the three files. A full public
// root store is about 200 KiB; anything larger is the wrong file, and reading
// it whole would let a bad path exhaust a small gateway's memory.
const maxFileSize = 1 << 20

// minRSABits is the smallest RSA key accepted for the client certificate.
const minRSABits = 2048

// stamp identifies one version of a file as stat sees it. Cert tools replace
// files by atomic rename, which changes the inode; editors and chmod/chown
// change size, mtime, mode or owner. The zero stamp means "could not stat".
type stamp struct {
	dev, ino uint64
	size     int64
	mtime    int64
	mode     fs.FileMode
	uid      int
	ok       bool
}

func stampOf(fi fs.FileInfo) stamp {
	st := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode(), uid: -1, ok: true}
	if id, ok := fileID(fi); ok {
		st.dev, st.ino, st.uid = id.dev, id.ino, id.uid
	}
	return st
}

// source names one of the three files the way an operator knows it: by its
// configuration key and its path.
type source struct {
	key  string // configuration key, e.g. "uplink.key_file"
	path string
}

func (s source) String() string { return s.key + " " + s.path }

// errorf prefixes an error with the file it is about.
func (s source) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{s}, args...)...)
}

// readFile reads one of the three files after checking that it is a regular
// file of sane size. For the private key (secret) it also insists on mode 0600
// or stricter and on being owned by the user the service runs as (owner),
// checked on the opened file so that a rename between check and read cannot
// slip past. For the CA bundle it refuses a world-writable file: whoever can
// write it decides whom the gateway trusts.
func readFile(src source, secret bool, u users) ([]byte, stamp, error) {
	fi, err := os.Stat(src.path)
	if err != nil {
		return nil, stamp{}, openError(src, err, u)
	}
	// Checked before opening so that a FIFO or a device at that path cannot
	// block the agent in open(2).
	if !fi.Mode().IsRegular() {
		return nil, stamp{}, src.errorf("is not a regular file (%s); point %s at the PEM file itself", fi.Mode(), src.key)
	}
	f, err := os.Open(src.path)
	if err != nil {
		return nil, stamp{}, openError(src, err, u)
	}
	defer f.Close()
	fi2, err := f.Stat()
	if err != nil {
		return nil, stamp{}, src.errorf("%w", err)
	}
	if !os.SameFile(fi, fi2) {
		return nil, stamp{}, src.errorf("was replaced while being read; it will be read again")
	}
	perm := fi2.Mode().Perm()
	switch {
	case secret && perm&0o077 != 0:
		return nil, stamp{}, src.errorf("private key is accessible by group or others (mode %04o); it must be readable by its owner only: chmod 600 %s", perm, src.path)
	case !secret && src.key == keyCA && perm&0o002 != 0:
		return nil, stamp{}, src.errorf("is writable by everyone (mode %04o), so anyone on the gateway could choose whom it trusts: chmod 644 %s", perm, src.path)
	}
	if secret {
		if id, ok := fileID(fi2); ok && id.uid != u.owner {
			return nil, stamp{}, src.errorf("private key is owned by %s, not by %s which runs the agent: chown %s %s",
				userName(id.uid), userName(u.owner), userName(u.owner), src.path)
		}
	}
	if fi2.Size() > maxFileSize {
		return nil, stamp{}, src.errorf("is %d bytes, more than the %d a PEM file of certificates or a key needs; is it the right file?", fi2.Size(), maxFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, stamp{}, src.errorf("read: %w", err)
	}
	if len(b) > maxFileSize {
		clear(b)
		return nil, stamp{}, src.errorf("grew past %d bytes while being read; is it the right file?", maxFileSize)
	}
	return b, stampOf(fi2), nil
}

// users says who reads the files (euid) and who must own the private key
// (owner: the user the service runs as). They differ when a technician runs
// --diagnose as root or as themselves on a gateway whose service runs as
// its own user; advice is then given for the service user, so that no
// message suggests a change that would lock the service out.
type users struct{ euid, owner int }

func openError(src source, err error, u users) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return src.errorf("does not exist; check %s in the configuration: %w", src.key, err)
	case errors.Is(err, fs.ErrPermission) && u.euid != u.owner:
		return src.errorf("cannot be read by %s; run as root or as %s, the user the service runs as: %w",
			userName(u.euid), userName(u.owner), err)
	case errors.Is(err, fs.ErrPermission):
		n := userName(u.euid)
		return src.errorf("cannot be read by %s, the user running the agent; make %s its owner or give it read access: %w", n, n, err)
	default:
		return src.errorf("%w", err)
	}
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return strconv.Itoa(uid)
}

var pemBegin = []byte("-----BEGIN ")

// parseCertificates returns the certificates of a PEM file in file order. It
// accepts only CERTIFICATE blocks (text between blocks is ignored, as in
// common CA bundles) and refuses anything that would silently drop or
// misread a block: a truncated or malformed block, a private key, a CSR, a CRL.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	blocks := 0
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		switch {
		case b.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d in the file cannot be parsed: %w", blocks, err)
			}
			certs = append(certs, c)
		case strings.Contains(b.Type, "PRIVATE KEY"):
			return nil, errors.New("holds a private key; keep the key only in uplink.key_file (mode 0600) and certificates here")
		case b.Type == "CERTIFICATE REQUEST" || b.Type == "NEW CERTIFICATE REQUEST":
			return nil, errors.New("holds a certificate signing request, not a certificate; have the city's PKI sign it and install the certificate it returns")
		default:
			return nil, fmt.Errorf("holds a %q PEM block (block %d); only CERTIFICATE blocks belong here", b.Type, blocks)
		}
	}
	// pem.Decode skips a malformed block and goes on with the next one, so
	// compare with the number of BEGIN lines to catch a block it dropped.
	if n := bytes.Count(data, pemBegin); n != blocks {
		return nil, errors.New("holds a malformed or truncated PEM block; replace the file with a complete copy")
	}
	if len(certs) == 0 {
		if looksDER(data) {
			return nil, errors.New("holds no PEM certificate; it looks like binary DER: convert it with openssl x509 -inform der -in FILE -out FILE.pem")
		}
		return nil, errors.New("holds no certificate (expected -----BEGIN CERTIFICATE-----)")
	}
	return certs, nil
}

// parsePrivateKey returns the single private key of a PEM file. CERTIFICATE
// blocks are skipped, since some tools write certificate and key together.
// Errors never include key bytes.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	var key crypto.Signer
	blocks := 0
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		// CERTIFICATE: some tools write certificate and key together.
		// EC PARAMETERS: `openssl ecparam -genkey` writes the curve's name
		// before the key (mosquitto accepts it); the key block names its
		// curve itself, so the parameters add nothing.
		if b.Type == "CERTIFICATE" || b.Type == "EC PARAMETERS" {
			continue
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errors.New("private key is protected by a passphrase, which an unattended gateway cannot type; store it unencrypted with mode 0600 (openssl pkey -in KEY -out KEY.new)")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			return nil, fmt.Errorf("holds a %q PEM block (block %d); expected a PRIVATE KEY: %s", b.Type, blocks, convertHint)
		}
		if err != nil {
			// The parser's own message describes ASN.1 internals, not what to
			// do; what matters is that the block is damaged or of a kind Go
			// does not read (e.g. an explicit-parameters EC key).
			return nil, fmt.Errorf("private key (PEM block %q) cannot be parsed; the file is damaged or holds a key form this agent does not read: %s", b.Type, convertHint)
		}
		if key != nil {
			return nil, errors.New("holds more than one private key; keep only the key of the client certificate")
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey:
			key = k
		case *rsa.PrivateKey:
			key = k
		case ed25519.PrivateKey:
			key = k
		default:
			return nil, fmt.Errorf("private key of type %T is not supported; use ECDSA P-256 (see enrollment), or convert: %s", k, convertHint)
		}
	}
	if n := bytes.Count(data, pemBegin); n != blocks {
		return nil, errors.New("holds a malformed or truncated PEM block; replace the file with a complete copy")
	}
	if key == nil {
		if looksDER(data) {
			return nil, errors.New("holds no PEM private key; it looks like binary DER: convert it with openssl pkey -inform der -in KEY -out KEY.pem")
		}
		return nil, errors.New("holds no private key (expected -----BEGIN PRIVATE KEY-----)")
	}
	return key, nil
}

// convertHint is the command that rewrites a readable key in the PKCS#8 PEM
// form every part of the agent accepts.
const convertHint = "convert it with: openssl pkey -in KEY -out KEY.pkcs8 && chmod 600 KEY.pkcs8 && mv KEY.pkcs8 KEY"

// looksDER reports whether data starts like a DER SEQUENCE, the usual mistake
// when a tool wrote binary instead of PEM.
func looksDER(data []byte) bool {
	return len(data) > 2 && data[0] == 0x30 && !bytes.Contains(data, pemBegin)
}
