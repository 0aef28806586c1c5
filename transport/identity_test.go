package transport_test

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func mustParseURL(t *testing.T, raw string) *url.URL {
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
			cert.URIs = append(cert.URIs, mustParseURL(t, raw))
		}
		_, _, ok := transport.NodeIdentity(cert)
		require.False(t, ok, "%q", uris)
	}
	_, _, ok := transport.NodeIdentity(nil)
	require.False(t, ok)
}

func TestNodeIdentityIgnoresOtherSchemes(t *testing.T) {
	cert := &x509.Certificate{URIs: []*url.URL{
		mustParseURL(t, "spiffe://example.org/db"), mustParseURL(t, "internode://c/n1")}}
	clusterName, node, ok := transport.NodeIdentity(cert)
	require.True(t, ok)
	require.Equal(t, "c", clusterName)
	require.Equal(t, cluster.NodeID("n1"), node)
}

func TestIssuedIdentityRoundTrips(t *testing.T) {
	ca := newCA(t, "orders.eu-west_1")
	for _, node := range []cluster.NodeID{"n1", "rack 3/node 7", "ünïcode", "100%?#", "\x00\xff"} {
		cert, err := ca.Issue(node)
		require.NoError(t, err, node)
		clusterName, got, ok := transport.NodeIdentity(cert.Leaf)
		require.True(t, ok, node)
		require.Equal(t, "orders.eu-west_1", clusterName)
		require.Equal(t, node, got)
		require.Equal(t, transport.IdentityURI("orders.eu-west_1", node).String(), cert.Leaf.URIs[0].String())
	}
	require.Equal(t, "internode://c/n1", transport.IdentityURI("c", "n1").String())
}

func FuzzIdentityURI(f *testing.F) {
	f.Add("c", "n1")
	f.Add("orders.eu-west_1", "rack 3/node 7")
	f.Add("c", "%zz?#")
	f.Fuzz(func(t *testing.T, clusterName, node string) {
		cfg := validConfig()
		cfg.ClusterName = clusterName
		cfg.Security.TLS = &transport.TLSConfig{Credentials: &transport.Credentials{}}
		if !validClusterForTLS(cfg) || node == "" || len(node) > 255 {
			t.Skip()
		}
		u, err := url.Parse(transport.IdentityURI(clusterName, cluster.NodeID(node)).String())
		require.NoError(t, err)
		gotCluster, gotNode, ok := transport.NodeIdentity(&x509.Certificate{URIs: []*url.URL{u}})
		require.True(t, ok)
		require.Equal(t, clusterName, gotCluster)
		require.Equal(t, cluster.NodeID(node), gotNode)
	})
}

// validClusterForTLS reports whether Validate accepts cfg's cluster name
// as an identity URI's host.
func validClusterForTLS(cfg transport.Config) bool {
	err := cfg.Validate()
	return err == nil || !strings.Contains(err.Error(), "ClusterName is a certificate's URI host")
}

func TestClusterNamesUnfitForCertificates(t *testing.T) {
	for _, name := range []string{"a b", "a..b", ".a", "a.", "a:1", "a/b", "ü",
		strings.Repeat("a", 64), strings.Repeat("a.", 127) + "a"} {
		cfg := validConfig()
		cfg.ClusterName = name
		require.NoError(t, cfg.Validate(), "%q is fine without TLS", name)
		cfg.Security.TLS = tlsFor(t, newCA(t, "c"), "n1")
		require.False(t, validClusterForTLS(cfg), "%q", name)
	}
}

func newCA(t testing.TB, clusterName string) *transporttest.CA {
	t.Helper()
	ca, err := transporttest.NewCA(clusterName)
	require.NoError(t, err)
	return ca
}
