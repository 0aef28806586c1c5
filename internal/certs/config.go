package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrWrongCluster is wrapped by the error that fails a handshake when the
// peer's certificate, though signed by the CA, does not name exactly one node
// of the CA's cluster. The peer sees a bad-certificate alert.
var ErrWrongCluster = errors.New("certs: peer certificate does not name a node of cluster")

// ServerConfig returns a TLS 1.3 server configuration presenting cert that
// requires every client to present a certificate issued by ca naming a node
// of ca's cluster. Each call returns a new Config, which the caller may
// modify.
func (ca *CA) ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        ca.pool,
		VerifyConnection: ca.verifyIdentity,
	}
}

// ClientConfig returns a TLS 1.3 client configuration presenting cert that
// accepts any server whose certificate was issued by ca for a node of ca's
// cluster, whatever the address dialed (see the package documentation). The
// caller checks which node answered with NodeIdentity. Each call returns a
// new Config, which the caller may modify.
func (ca *CA) ClientConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca.pool,
		// Host-name verification is replaced by verifyServer below, which
		// checks the chain and the identity URI.
		InsecureSkipVerify: true,
		VerifyConnection:   ca.verifyServer,
	}
}

// verifyServer does for the client what InsecureSkipVerify turned off —
// verify the chain to the CA for server authentication — and then checks the
// identity.
func (ca *CA) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certs: server presented no certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         ca.pool,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("certs: server certificate: %w", err)
	}
	return ca.verifyIdentity(cs)
}

// verifyIdentity checks that the verified peer certificate names a node of
// ca's cluster.
func (ca *CA) verifyIdentity(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certs: peer presented no certificate")
	}
	cluster, node, ok := NodeIdentity(cs.PeerCertificates[0])
	if !ok {
		return fmt.Errorf("%w %q: no single valid %s:// URI SAN", ErrWrongCluster, ca.cluster, Scheme)
	}
	if cluster != ca.cluster {
		return fmt.Errorf("%w %q: it names node %q of cluster %q", ErrWrongCluster, ca.cluster, node, cluster)
	}
	return nil
}
