package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// clusterCA is the certificate authority of a -tls run: it issues each node
// a certificate naming it as internode://<cluster>/<node>, the identity the
// transport checks on every connection.
type clusterCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

// newCA makes a self-signed ECDSA P-256 CA, valid for a day.
func newCA() (*clusterCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	template := certTemplate("internode simulator CA")
	template.IsCA = true
	template.BasicConstraintsValid = true
	template.MaxPathLenZero = true
	template.KeyUsage = x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return caFrom(der, key)
}

func caFrom(der []byte, key *ecdsa.PrivateKey) (*clusterCA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &clusterCA{cert: cert, key: key, pool: pool}, nil
}

func certTemplate(commonName string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"internode simulator"}, CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

// tlsConfig issues node's certificate, naming it with the URI SAN the
// transport checks (transport.IdentityURI), and returns the transport's
// TLS configuration from the public constructor: mutual TLS 1.3, both
// ends verified against this CA alone, whatever the address dialled.
func (ca *clusterCA) tlsConfig(clusterName string, node cluster.NodeID) (*transport.TLSConfig, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	identity := transport.IdentityURI(clusterName, node)
	template := certTemplate(identity.String())
	template.KeyUsage = x509.KeyUsageDigitalSignature
	template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	template.URIs = []*url.URL{identity}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issuing %s's certificate: %w", node, err)
	}
	return transport.NewMutualTLS(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca.pool)
}

// loadOrCreateCA returns the CA kept in dir (ca.pem, ca-key.pem), creating
// it if absent, so that node processes started with the same -tls-dir
// trust each other. Creation is atomic: of processes starting together,
// one writes the CA and the others read it.
func loadOrCreateCA(dir string) (*clusterCA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		ca, err := newCA()
		if err != nil {
			return nil, err
		}
		keyDER, err := x509.MarshalECPrivateKey(ca.key)
		if err != nil {
			return nil, err
		}
		// The key first, then the certificate, each linked into place
		// (link fails if the name exists): a reader that finds ca.pem finds
		// its key too.
		if err := writeExclusive(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err == nil {
			if err := writeExclusive(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644); err != nil {
				return nil, err
			}
			return ca, nil
		} else if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	// Another process created it; it may still be writing ca.pem.
	var certPEM []byte
	var err error
	for range 50 {
		if certPEM, err = os.ReadFile(certPath); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // another process: nothing to wait on
	}
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	certBlock, _ := pem.Decode(certPEM)
	keyBlock, _ := pem.Decode(keyPEM)
	if certBlock == nil || keyBlock == nil {
		return nil, fmt.Errorf("%s: not a CA written by the simulator", dir)
	}
	key, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, err
	}
	return caFrom(certBlock.Bytes, key)
}

// writeExclusive writes data to path unless path exists (os.ErrExist).
func writeExclusive(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
