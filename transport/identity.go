package transport

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

// IdentityScheme is the URI scheme of node identities in certificates.
const IdentityScheme = "internode"

// IdentityURI returns internode://<clusterName>/<node>, the URI SAN a node's
// certificate must carry under TLS. The node is escaped as a URI path; the
// cluster name is the URI's host, so with TLS it must be dot-separated
// labels of letters, digits, '-' and '_' (Config.Validate checks it).
// Give it to the CA that issues the node's certificate.
func IdentityURI(clusterName string, node cluster.NodeID) *url.URL {
	return &url.URL{Scheme: IdentityScheme, Host: clusterName, Path: "/" + string(node)}
}

// NodeIdentity returns the cluster and node named by cert's single
// internode:// URI SAN. ok is false when cert has none, has more than one,
// or has one that is not exactly internode://<cluster>/<node> (with a
// port, user, query, fragment or empty part). Other URI SANs are ignored.
func NodeIdentity(cert *x509.Certificate) (clusterName string, node cluster.NodeID, ok bool) {
	if cert == nil {
		return "", "", false
	}
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != IdentityScheme {
			continue
		}
		found++
		clusterName, node, ok = parseIdentity(u)
	}
	if found != 1 || !ok {
		return "", "", false
	}
	return clusterName, node, true
}

func parseIdentity(u *url.URL) (clusterName string, node cluster.NodeID, ok bool) {
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.Port() != "" || validateIdentityCluster(u.Host) != nil {
		return "", "", false
	}
	id, ok := strings.CutPrefix(u.Path, "/")
	if !ok || id == "" || len(id) > wire.MaxNameLength {
		return "", "", false
	}
	return u.Host, cluster.NodeID(id), true
}

// validateIdentityCluster reports whether a cluster name can be the host of
// an identity URI: dot-separated labels of letters, digits, '-' and '_',
// each 1 to 63 bytes, at most 253 bytes in all — stricter than the
// handshake, because crypto/x509 checks the host of a URI SAN as a domain.
func validateIdentityCluster(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("cluster name %.64q must be 1 to 253 bytes", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("cluster name %.64q: labels between dots must be 1 to 63 bytes", name)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("cluster name %.64q: only letters, digits, '-', '_' and '.' are allowed", name)
			}
		}
	}
	return nil
}

// errNoIdentity: a certificate without a usable identity URI.
var errNoIdentity = errors.New("certificate has no single internode://<cluster>/<node> URI SAN")

// checkIdentity applies the identity rule: cert must name node of
// clusterName.
func checkIdentity(cert *x509.Certificate, clusterName string, node cluster.NodeID) error {
	gotCluster, gotNode, ok := NodeIdentity(cert)
	if !ok {
		return errNoIdentity
	}
	if gotCluster != clusterName || gotNode != node {
		err := fmt.Errorf("certificate names node %q of cluster %q, not %q of %q", gotNode, gotCluster, node, clusterName)
		if gotCluster == clusterName {
			return &otherNodeError{node: gotNode, err: err}
		}
		return err
	}
	return nil
}

// otherNodeError is a certificate of this cluster that names another
// node than the one a dial meant to reach: the address it dialled is
// that node's now (see handshake).
type otherNodeError struct {
	node cluster.NodeID // the node the certificate names
	err  error
}

func (e *otherNodeError) Error() string { return e.err.Error() }
