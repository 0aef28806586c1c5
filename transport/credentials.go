package transport

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Credentials are a node's TLS material: its certificate and the roots
// that verify its peers' certificates. Every new handshake reads the
// material in force at that moment, so replacing it (Reload, Update)
// rotates certificates and trust roots without a restart; connections
// already established continue with what they were verified with.
//
// Make Credentials with LoadCredentials (files, re-read by Reload),
// ParseCredentials (PEM bytes) or NewCredentials; the zero value is not
// usable. Credentials are safe for concurrent use and may be shared by
// several transports.
type Credentials struct {
	files *credentialFiles // nil unless loaded from files

	mu     sync.Mutex // serialises Reload and Update
	loaded [3][]byte  // the files' bytes last parsed, to tell a change
	cur    atomic.Pointer[credentialSet]
}

type credentialFiles struct{ cert, key, ca string }

// credentialSet is one immutable generation of material.
type credentialSet struct {
	cert  *tls.Certificate // Leaf is set
	roots *x509.CertPool   // never nil, never empty
}

// LoadCredentials reads a node's certificate (PEM, the leaf first, then any
// intermediates), its private key (PEM) and the roots it trusts (PEM, one
// or more CA certificates: during a CA rollover, the old and the new).
// Reload, and the transport every TLSConfig.ReloadInterval, read the same
// files again.
func LoadCredentials(certFile, keyFile, caFile string) (*Credentials, error) {
	c := &Credentials{files: &credentialFiles{cert: certFile, key: keyFile, ca: caFile}}
	if _, err := c.reloadFiles(true); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseCredentials makes Credentials from PEM bytes: the certificate (leaf
// first, then any intermediates), its private key and the trusted roots.
// Replace them later with Update.
func ParseCredentials(certPEM, keyPEM, caPEM []byte) (*Credentials, error) {
	set, err := parseCredentials(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, err
	}
	c := &Credentials{}
	c.cur.Store(set)
	return c, nil
}

// NewCredentials makes Credentials from a certificate with its private
// key and the pool of trusted roots. The pool must not be changed
// afterwards: give Update a new one instead.
func NewCredentials(cert tls.Certificate, roots *x509.CertPool) (*Credentials, error) {
	set, err := newCredentialSet(cert, roots)
	if err != nil {
		return nil, err
	}
	c := &Credentials{}
	c.cur.Store(set)
	return c, nil
}

// Reload reads the files given to LoadCredentials again and, if they parse
// and the key matches the certificate, puts them in force for every new
// handshake. On error the material in force stays, so a half-written file
// is harmless: Reload again once it is complete. (A file cut inside a PEM
// block is refused; one cut exactly between two blocks reads as the
// blocks before: write each file to a temporary name and rename it over
// the old.) For Credentials not made from files it does nothing and
// returns nil.
func (c *Credentials) Reload() error {
	_, err := c.reloadFiles(true)
	return err
}

// reloadIfChanged reloads the files if their bytes changed since they were
// last parsed, and reports whether it did.
func (c *Credentials) reloadIfChanged() (bool, error) { return c.reloadFiles(false) }

func (c *Credentials) reloadFiles(force bool) (bool, error) {
	if c.files == nil {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var read [3][]byte
	for i, name := range []string{c.files.cert, c.files.key, c.files.ca} {
		b, err := os.ReadFile(name)
		if err != nil {
			return false, fmt.Errorf("transport: credentials: %w", err)
		}
		read[i] = b
	}
	if !force && bytes.Equal(read[0], c.loaded[0]) && bytes.Equal(read[1], c.loaded[1]) && bytes.Equal(read[2], c.loaded[2]) {
		return false, nil
	}
	set, err := parseCredentials(read[0], read[1], read[2])
	if err != nil {
		return false, fmt.Errorf("%w (from %s, %s, %s)", err, c.files.cert, c.files.key, c.files.ca)
	}
	c.loaded = read
	c.cur.Store(set)
	return true, nil
}

// Update puts a new certificate and roots in force for every new
// handshake, as Reload does for files. On error the material in force
// stays. The pool must not be changed afterwards.
func (c *Credentials) Update(cert tls.Certificate, roots *x509.CertPool) error {
	set, err := newCredentialSet(cert, roots)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.Store(set)
	return nil
}

// Certificate returns the leaf of the node's certificate in force.
func (c *Credentials) Certificate() *x509.Certificate { return c.cur.Load().cert.Leaf }

func (c *Credentials) current() *credentialSet { return c.cur.Load() }

func parseCredentials(certPEM, keyPEM, caPEM []byte) (*credentialSet, error) {
	if pemCutShort(certPEM) || pemCutShort(caPEM) {
		return nil, errors.New("transport: credentials: a PEM block is cut short (a file read while being written?)")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("transport: credentials: %w", err)
	}
	roots, found := x509.NewCertPool(), false
	for block, rest := pem.Decode(caPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("transport: credentials: roots: %w", err)
		}
		roots.AddCert(ca)
		found = true
	}
	if !found {
		return nil, errors.New("transport: credentials: no CA certificate in the roots' PEM")
	}
	return newCredentialSet(cert, roots)
}

func newCredentialSet(cert tls.Certificate, roots *x509.CertPool) (*credentialSet, error) {
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("transport: credentials: a certificate and its private key are required")
	}
	if emptyPool(roots) {
		return nil, errors.New("transport: credentials: no trusted roots: the transport never falls back to the system's")
	}
	// Leaf is parsed from the certificate sent, whatever the caller's
	// says: a struct given a new chain may still carry the old Leaf, and
	// the checks below, the expiry metric and the identity warnings must
	// be about what peers will see.
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("transport: credentials: %w", err)
	}
	cert.Leaf = leaf
	if !keyMatches(cert.PrivateKey, cert.Leaf) {
		// tls.X509KeyPair checks this for files; a certificate from a
		// secret store, rotated but not yet its key, must not be put in
		// force either: every handshake would fail on the key.
		return nil, errors.New("transport: credentials: private key does not match the certificate's public key")
	}
	if _, _, ok := NodeIdentity(cert.Leaf); !ok {
		return nil, fmt.Errorf("transport: credentials: %w", errNoIdentity)
	}
	return &credentialSet{cert: &cert, roots: roots}, nil
}

// keyMatches reports whether key is the private key of leaf's public key.
func keyMatches(key crypto.PrivateKey, leaf *x509.Certificate) bool {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return false // TLS 1.3 signs with it: a key that cannot sign is of no use
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(leaf.PublicKey)
}

// pemCutShort reports whether a PEM block begins after the last whole one:
// pem.Decode, and so tls.X509KeyPair, skip it, and a file cut short would
// then parse as fewer certificates (a chain without its intermediates,
// roots without a CA). A block has begun once its "-----BEGIN" line has,
// so a file whose last line is the start of that marker was cut too. A
// file cut exactly between two blocks cannot be told from a whole one.
func pemCutShort(b []byte) bool {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
	}
	if bytes.Contains(b, pemBegin) {
		return true
	}
	lastLine := b[bytes.LastIndexByte(b, '\n')+1:]
	return len(lastLine) > 0 && bytes.HasPrefix(pemBegin, lastLine)
}

// pemBegin starts every PEM block.
var pemBegin = []byte("-----BEGIN")

// emptyPool reports whether pool trusts nothing. A nil pool would make
// x509 verify against the system's roots: it counts as empty.
func emptyPool(pool *x509.CertPool) bool { return pool == nil || pool.Equal(x509.NewCertPool()) }
