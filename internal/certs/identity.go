package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Scheme is the URI scheme of node identities.
const Scheme = "internode"

// maxNameLength matches the handshake's bound on cluster names and node IDs.
const maxNameLength = 255

// IdentityURI returns internode://<cluster>/<node>, the URI SAN that names a
// node. The node is escaped as a URI path; the cluster, a URI host, must pass
// ValidateCluster for the URI to be usable in a certificate.
func IdentityURI(cluster, node string) *url.URL {
	return &url.URL{Scheme: Scheme, Host: cluster, Path: "/" + node}
}

// NodeIdentity returns the cluster and node named by cert's single
// internode:// URI SAN. ok is false when cert has none, has more than one,
// or has one that is not exactly internode://<cluster>/<node> (with a port,
// user, query, fragment or empty part). Other URI SANs are ignored.
func NodeIdentity(cert *x509.Certificate) (cluster, node string, ok bool) {
	if cert == nil {
		return "", "", false
	}
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != Scheme {
			continue
		}
		found++
		cluster, node, ok = parseIdentity(u)
	}
	if found != 1 || !ok {
		return "", "", false
	}
	return cluster, node, true
}

func parseIdentity(u *url.URL) (cluster, node string, ok bool) {
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.Port() != "" || ValidateCluster(u.Host) != nil {
		return "", "", false
	}
	node, ok = strings.CutPrefix(u.Path, "/")
	if !ok || validateNode(node) != nil {
		return "", "", false
	}
	return u.Host, node, true
}

// ValidateCluster reports whether cluster can be the host part of an
// identity URI: dot-separated labels of letters, digits, '-' and '_', each
// 1 to 63 bytes, at most 253 bytes in all — a stricter rule than the
// handshake's, because crypto/x509 checks the host of a URI SAN as a domain.
func ValidateCluster(cluster string) error {
	if cluster == "" || len(cluster) > 253 {
		return fmt.Errorf("certs: cluster name %.64q must be 1 to 253 bytes", cluster)
	}
	for label := range strings.SplitSeq(cluster, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("certs: cluster name %.64q: labels between dots must be 1 to 63 bytes", cluster)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("certs: cluster name %.64q: only letters, digits, '-', '_' and '.' are allowed", cluster)
			}
		}
	}
	return nil
}

func validateNode(node string) error {
	if node == "" || len(node) > maxNameLength {
		return errors.New("certs: node ID must be 1 to 255 bytes")
	}
	return nil
}
