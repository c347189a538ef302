package remote

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// Key is one trusted Ed25519 public key.
type Key struct {
	// ID is the key's RFC 7638 JWK thumbprint (SHA-256, base64url without
	// padding). A command may name it in its protected header as "kid".
	ID  string
	Pub ed25519.PublicKey
}

// KeySet is the set of keys whose signatures are trusted. It is immutable
// once loaded.
type KeySet struct {
	keys []Key
	byID map[string]int
}

// KeyID returns the RFC 7638 thumbprint that identifies pub as a "kid".
func KeyID(pub ed25519.PublicKey) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("remote: Ed25519 public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("remote: key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// NewKeySet builds a key set from public keys (duplicates are refused).
func NewKeySet(pubs ...ed25519.PublicKey) (*KeySet, error) {
	ks := &KeySet{byID: make(map[string]int)}
	for i, p := range pubs {
		id, err := KeyID(p)
		if err != nil {
			return nil, fmt.Errorf("remote: key %d: %w", i+1, err)
		}
		if _, dup := ks.byID[id]; dup {
			return nil, fmt.Errorf("remote: key %d: duplicate of an earlier key (kid %s)", i+1, id)
		}
		ks.byID[id] = len(ks.keys)
		ks.keys = append(ks.keys, Key{ID: id, Pub: append(ed25519.PublicKey(nil), p...)})
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("remote: no trusted keys")
	}
	return ks, nil
}

// LoadKeys reads a PEM file holding one or more "PUBLIC KEY" blocks
// (PKIX, RFC 8410), each an Ed25519 key. Any other block type or key type,
// a malformed block or a file without a key is an error naming the file and
// the block number. Text outside the blocks is ignored (RFC 7468 allows
// explanatory text), so a key can be annotated with its holder's name.
func LoadKeys(path string) (*KeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("remote: trusted keys: %w", err)
	}
	ks, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("remote: trusted keys %s: %w", path, err)
	}
	return ks, nil
}

// ParseKeys parses the contents of a trusted keys file (see [LoadKeys]).
func ParseKeys(data []byte) (*KeySet, error) {
	var pubs []ed25519.PublicKey
	rest := data
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("block %d: type %q, want \"PUBLIC KEY\"", n, b.Type)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", n, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("block %d: %T is not an Ed25519 key; only Ed25519 keys are trusted", n, k)
		}
		pubs = append(pubs, pub)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("block %d: malformed PEM block (no matching END line or bad base64)", len(pubs)+1)
	}
	if len(pubs) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block")
	}
	ks, err := NewKeySet(pubs...)
	if err != nil {
		return nil, err
	}
	return ks, nil
}

// Keys returns the trusted keys in file order.
func (ks *KeySet) Keys() []Key { return append([]Key(nil), ks.keys...) }

// Lookup returns the key with thumbprint id.
func (ks *KeySet) Lookup(id string) (Key, bool) {
	i, ok := ks.byID[id]
	if !ok {
		return Key{}, false
	}
	return ks.keys[i], true
}
