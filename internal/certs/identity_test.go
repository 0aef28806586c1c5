package certs_test

import (
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/certs"
)

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

func TestNodeIdentityRejects(t *testing.T) {
	for _, uris := range [][]string{
		{},
		{"spiffe://c/n1"},
		{"https://c/n1"},
		{"internode://c"},
		{"internode://c/"},
		{"internode:///n1"},
		{"internode://c:7000/n1"},
		{"internode://user@c/n1"},
		{"internode://c/n1?x=1"},
		{"internode://c/n1?"},
		{"internode://c/n1#f"},
		{"internode:c/n1"},
		{"internode://c..d/n1"},
		{"internode://c/" + strings.Repeat("n", 256)},
		{"internode://c/n1", "internode://c/n2"},
	} {
		cert := &x509.Certificate{}
		for _, raw := range uris {
			cert.URIs = append(cert.URIs, mustParse(t, raw))
		}
		_, _, ok := certs.NodeIdentity(cert)
		require.False(t, ok, "%q", uris)
	}
	_, _, ok := certs.NodeIdentity(nil)
	require.False(t, ok)
}

func TestNodeIdentityIgnoresOtherSchemes(t *testing.T) {
	cert := &x509.Certificate{URIs: []*url.URL{
		mustParse(t, "spiffe://example.org/db"), mustParse(t, "internode://c/n1")}}
	cluster, node, ok := certs.NodeIdentity(cert)
	require.True(t, ok)
	require.Equal(t, "c", cluster)
	require.Equal(t, "n1", node)
}

func TestIssuedIdentityRoundTrips(t *testing.T) {
	ca := newCA(t, "orders.eu-west_1")
	for _, node := range []string{"n1", "rack 3/node 7", "ünïcode", "100%?#", "\x00\xff"} {
		cert, err := ca.Issue(node)
		require.NoError(t, err, node)
		cluster, got, ok := certs.NodeIdentity(cert.Leaf)
		require.True(t, ok, node)
		require.Equal(t, "orders.eu-west_1", cluster)
		require.Equal(t, node, got)
		require.Equal(t, certs.IdentityURI("orders.eu-west_1", node).String(), cert.Leaf.URIs[0].String())
	}
	require.Equal(t, "internode://c/n1", certs.IdentityURI("c", "n1").String())
}

func TestIssueSANsAndUsage(t *testing.T) {
	ca := newCA(t, "c")
	cert := issue(t, ca, "n1")
	require.Equal(t, []string{"localhost"}, cert.Leaf.DNSNames)
	require.Len(t, cert.Leaf.IPAddresses, 1)
	require.True(t, cert.Leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)))
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.Leaf.ExtKeyUsage)
	require.Equal(t, x509.ECDSA, cert.Leaf.PublicKeyAlgorithm)
	require.WithinDuration(t, time.Now().Add(certs.Validity), cert.Leaf.NotAfter, time.Minute)
	require.NoError(t, cert.Leaf.CheckSignatureFrom(ca.Certificate()))

	cert, err := ca.Issue("n2", "db-2.example", "::1", "10.0.0.2")
	require.NoError(t, err)
	require.Equal(t, []string{"db-2.example"}, cert.Leaf.DNSNames)
	require.Len(t, cert.Leaf.IPAddresses, 2)
	_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "db-2.example",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
}

func TestInvalidNames(t *testing.T) {
	for _, cluster := range []string{"", "a b", "a..b", ".a", "a.", "a:1", "a/b", "ü",
		strings.Repeat("a", 64), strings.Repeat("a.", 127) + "a"} {
		_, err := certs.NewCA(cluster)
		require.Error(t, err, "%q", cluster)
		require.Error(t, certs.ValidateCluster(cluster))
	}
	ca := newCA(t, "c")
	require.Equal(t, "c", ca.Cluster())
	_, err := ca.Issue("")
	require.Error(t, err)
	_, err = ca.Issue(strings.Repeat("n", 256))
	require.Error(t, err)
}

func FuzzIdentityURI(f *testing.F) {
	f.Add("c", "n1")
	f.Add("orders.eu-west_1", "rack 3/node 7")
	f.Add("c", "%zz?#")
	f.Fuzz(func(t *testing.T, cluster, node string) {
		if certs.ValidateCluster(cluster) != nil || node == "" || len(node) > 255 {
			t.Skip()
		}
		u, err := url.Parse(certs.IdentityURI(cluster, node).String())
		require.NoError(t, err)
		gotCluster, gotNode, ok := certs.NodeIdentity(&x509.Certificate{URIs: []*url.URL{u}})
		require.True(t, ok)
		require.Equal(t, cluster, gotCluster)
		require.Equal(t, node, gotNode)
	})
}
