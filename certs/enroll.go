package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxCNLength is the upper bound X.520 sets for a common name (ub-common-name).
const maxCNLength = 64

// Enroll creates the gateway's private key and a certificate signing request
// for the city's PKI. The key is ECDSA P-256, written to keyFile with mode
// 0600 atomically (it either exists complete or not at all) and never printed:
// it does not leave the device. An existing keyFile is never replaced. The
// CSR (PEM, PKCS#10, subject CN = commonName, the agent id) goes to csrFile,
// or to standard output when csrFile is "-".
//
// Run it as the user that runs the agent: Load insists that the key is owned
// by that user.
func Enroll(keyFile, csrFile, commonName string) error {
	return enroll(keyFile, csrFile, commonName, os.Stdout)
}

func enroll(keyFile, csrFile, commonName string, stdout io.Writer) error {
	switch {
	case commonName == "":
		return errors.New("certs: enroll: the agent id (agent.id) is empty; it becomes the certificate's common name")
	case len(commonName) > maxCNLength:
		return fmt.Errorf("certs: enroll: agent id %q is longer than the %d bytes a certificate's common name may have", commonName, maxCNLength)
	case keyFile == "":
		return errors.New("certs: enroll: no key file given (uplink.key_file)")
	case csrFile == "":
		return errors.New("certs: enroll: no CSR file given; use - for standard output")
	case csrFile != "-" && filepath.Clean(csrFile) == filepath.Clean(keyFile):
		return fmt.Errorf("certs: enroll: the CSR and the key would both be written to %s; choose another CSR file", keyFile)
	}
	if _, err := os.Lstat(keyFile); err == nil {
		return fmt.Errorf("certs: enroll: %w", existsError(keyFile))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("certs: enroll: key file %s: %w", keyFile, err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: enroll: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: commonName},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, key)
	if err != nil {
		return fmt.Errorf("certs: enroll: create CSR: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: enroll: encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	err = writeAtomic(keyFile, keyPEM, 0o600, true)
	clear(keyPEM)
	if err != nil {
		return fmt.Errorf("certs: enroll: %w", err)
	}

	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
	if csrFile == "-" {
		_, err = stdout.Write(csrPEM)
	} else {
		err = writeAtomic(csrFile, csrPEM, 0o644, false)
	}
	if err != nil {
		// Without its CSR the new key is of no use; remove it so that
		// enrollment can simply be run again.
		if rmErr := os.Remove(keyFile); rmErr == nil {
			_ = syncDir(filepath.Dir(keyFile))
			return fmt.Errorf("certs: enroll: write CSR: %w (the new key %s was removed again; run enrollment once more)", err, keyFile)
		}
		return fmt.Errorf("certs: enroll: write CSR: %w (remove the new key %s before running enrollment again)", err, keyFile)
	}
	return nil
}

func existsError(keyFile string) error {
	return fmt.Errorf("key file %s already exists and is never overwritten: it is this gateway's identity. "+
		"To get a certificate for the existing key, create a CSR from it (openssl req -new -key %s -subj /CN=<agent id>); "+
		"to replace the identity, move the old key away first (mv %s %s.old) and enroll again", keyFile, keyFile, keyFile, keyFile)
}

// writeAtomic writes data to path so that path either holds all of it or is
// untouched: a temporary file in the same directory, chmod, fsync, then a
// rename (or, with noClobber, a hard link, which fails instead of replacing an
// existing file), then an fsync of the directory so the new name survives a
// power cut.
func writeAtomic(path string, data []byte, perm fs.FileMode, noClobber bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("create %s: directory %s does not exist; create it first: %w", path, dir, err)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	// CreateTemp already made the file 0600; Chmod makes the mode exact
	// whatever the umask.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if noClobber {
		err := os.Link(tmp, path)
		switch {
		case err == nil:
			// Drop the temporary name before the directory sync, so that no
			// second name of the key survives a power cut.
			if err := os.Remove(tmp); err != nil {
				return fmt.Errorf("remove %s: %w", tmp, err)
			}
			tmp = ""
		case errors.Is(err, fs.ErrExist):
			return existsError(path)
		default:
			// Some file systems (FAT) have no hard links: fall back to a
			// rename after checking again that nothing is there.
			if _, statErr := os.Lstat(path); !errors.Is(statErr, fs.ErrNotExist) {
				return existsError(path)
			}
			if err := os.Rename(tmp, path); err != nil {
				return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
			}
			tmp = ""
		}
	} else {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
		}
		tmp = ""
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
