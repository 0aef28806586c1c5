package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// issueWithURIs signs, with ca's key, a certificate naming whatever URIs the
// test wants — what a CA shared by two clusters, or a careless one, could do.
func issueWithURIs(t *testing.T, ca *CA, uris ...*url.URL) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template, err := newTemplate("stray")
	require.NoError(t, err)
	template.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	template.URIs = uris
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestVerifyIdentityRefusesOtherClusters(t *testing.T) {
	ca, err := NewCA("c")
	require.NoError(t, err)
	for name, cert := range map[string]tls.Certificate{
		"other cluster": issueWithURIs(t, ca, IdentityURI("d", "n9")),
		"no identity":   issueWithURIs(t, ca),
		"two identities": issueWithURIs(t, ca,
			IdentityURI("c", "n1"), IdentityURI("c", "n2")),
	} {
		t.Run(name, func(t *testing.T) {
			state := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
			require.ErrorIs(t, ca.verifyIdentity(state), ErrWrongCluster)
			require.ErrorIs(t, ca.verifyServer(state), ErrWrongCluster, "the chain is fine; the identity is not")
		})
	}
	good, err := ca.Issue("n1")
	require.NoError(t, err)
	require.NoError(t, ca.verifyServer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{good.Leaf}}))
}
