package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Validity is how long certificates from NewCA and Issue are valid. They are
// also valid from clockSkew before they were made.
const Validity = 24 * time.Hour

const clockSkew = 5 * time.Minute

// DefaultHosts are the SANs Issue gives when it is given no hosts.
var DefaultHosts = []string{"127.0.0.1", "localhost"}

// CA is a throwaway certificate authority for one cluster. It is immutable
// once made and safe for concurrent use.
type CA struct {
	cluster string
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// NewCA makes a self-signed ECDSA P-256 CA for cluster, which must pass
// ValidateCluster.
func NewCA(cluster string) (*CA, error) {
	if err := ValidateCluster(cluster); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	template, err := newTemplate("internode test CA for " + cluster)
	if err != nil {
		return nil, err
	}
	template.IsCA = true
	template.BasicConstraintsValid = true
	template.MaxPathLenZero = true
	template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cluster: cluster, cert: cert, key: key, pool: pool}, nil
}

// Cluster returns the cluster the CA issues certificates for.
func (ca *CA) Cluster() string { return ca.cluster }

// Certificate returns the CA's own certificate, for writing out as PEM.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool returns a pool holding only the CA's certificate. Callers must not
// add to it.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Issue makes an ECDSA P-256 certificate for node, usable by both servers
// and clients, with the URI SAN IdentityURI(cluster, node) and a DNS or IP
// SAN for each host (DefaultHosts if none are given). Leaf is set.
func (ca *CA) Issue(node string, hosts ...string) (tls.Certificate, error) {
	if err := validateNode(node); err != nil {
		return tls.Certificate{}, err
	}
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %w", err)
	}
	identity := IdentityURI(ca.cluster, node)
	// The common name is the escaped URI because node IDs are any bytes and
	// a common name must be UTF-8.
	template, err := newTemplate(identity.String())
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
		return tls.Certificate{}, fmt.Errorf("certs: issuing for node %q: %w", node, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: issuing for node %q: %w", node, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func newTemplate(commonName string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"internode"}, CommonName: commonName},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(Validity),
	}, nil
}
