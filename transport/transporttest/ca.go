package transporttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// Validity is how long certificates from NewCA and Issue are valid. They
// are also valid from ClockSkew before they were made.
const (
	Validity  = 24 * time.Hour
	ClockSkew = 5 * time.Minute
)

// DefaultHosts are the SANs Issue gives when it is given no hosts.
var DefaultHosts = []string{"127.0.0.1", "localhost"}

// CA is a throwaway certificate authority for one cluster's tests: its key
// lives in memory. It is immutable once made and safe for concurrent use.
type CA struct {
	clusterName string
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	pool        *x509.CertPool
}

// NewCA makes a self-signed ECDSA P-256 CA issuing certificates for the
// nodes of clusterName.
func NewCA(clusterName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("transporttest: %w", err)
	}
	now := time.Now()
	template, err := newTemplate("internode test CA for "+clusterName, now.Add(-ClockSkew), now.Add(Validity))
	if err != nil {
		return nil, err
	}
	template.IsCA = true
	template.BasicConstraintsValid = true
	template.MaxPathLenZero = true
	template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("transporttest: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("transporttest: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{clusterName: clusterName, cert: cert, key: key, pool: pool}, nil
}

// Cluster returns the cluster the CA issues certificates for.
func (ca *CA) Cluster() string { return ca.clusterName }

// Certificate returns the CA's own certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool returns a pool holding only the CA's certificate. Callers must not
// add to it.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// PEM returns the CA's certificate in PEM, as a roots file holds it; the
// PEM of several CAs, concatenated, trusts them all.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Issue makes an ECDSA P-256 certificate for node, valid from ClockSkew
// ago for Validity, usable by both ends of a connection, with the URI SAN
// transport.IdentityURI(cluster, node) and a DNS or IP SAN for each host
// (DefaultHosts if none are given). Leaf is set.
func (ca *CA) Issue(node cluster.NodeID, hosts ...string) (tls.Certificate, error) {
	now := time.Now()
	return ca.IssueValid(node, now.Add(-ClockSkew), now.Add(Validity), hosts...)
}

// IssueValid is Issue with the given validity period: in the past for an
// expired certificate, short for one about to expire.
func (ca *CA) IssueValid(node cluster.NodeID, notBefore, notAfter time.Time, hosts ...string) (tls.Certificate, error) {
	if node == "" {
		return tls.Certificate{}, fmt.Errorf("transporttest: empty node ID")
	}
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transporttest: %w", err)
	}
	identity := transport.IdentityURI(ca.clusterName, node)
	// The common name is the escaped URI because node IDs are any bytes
	// and a common name must be UTF-8.
	template, err := newTemplate(identity.String(), notBefore, notAfter)
	if err != nil {
		return tls.Certificate{}, err
	}
	template.KeyUsage = x509.KeyUsageDigitalSignature
	template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	template.URIs = []*url.URL{identity}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else if h != "" {
			template.DNSNames = append(template.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transporttest: issuing for node %q: %w", node, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transporttest: issuing for node %q: %w", node, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// TLSConfig issues a certificate for node and returns the transport's TLS
// configuration presenting it and trusting only this CA, as
// transport.NewMutualTLS makes it.
func (ca *CA) TLSConfig(node cluster.NodeID) (*transport.TLSConfig, error) {
	cert, err := ca.Issue(node)
	if err != nil {
		return nil, err
	}
	return transport.NewMutualTLS(cert, ca.pool)
}

// EncodePEM returns cert's chain and private key in PEM, as files that
// transport.MutualTLS reads hold them.
func EncodePEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("transporttest: %w", err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func newTemplate(commonName string, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("transporttest: %w", err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"internode"}, CommonName: commonName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}, nil
}
