package transporttest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestIssueSANsAndUsage(t *testing.T) {
	ca, err := transporttest.NewCA("c")
	require.NoError(t, err)
	require.Equal(t, "c", ca.Cluster())
	cert, err := ca.Issue("n1")
	require.NoError(t, err)
	require.Equal(t, []string{"localhost"}, cert.Leaf.DNSNames)
	require.Len(t, cert.Leaf.IPAddresses, 1)
	require.True(t, cert.Leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)))
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.Leaf.ExtKeyUsage)
	require.Equal(t, x509.ECDSA, cert.Leaf.PublicKeyAlgorithm)
	require.WithinDuration(t, time.Now().Add(transporttest.Validity), cert.Leaf.NotAfter, time.Minute)
	require.NoError(t, cert.Leaf.CheckSignatureFrom(ca.Certificate()))
	require.Equal(t, "internode://c/n1", cert.Leaf.URIs[0].String())

	cert, err = ca.Issue("n2", "db-2.example", "::1", "10.0.0.2")
	require.NoError(t, err)
	require.Equal(t, []string{"db-2.example"}, cert.Leaf.DNSNames)
	require.Len(t, cert.Leaf.IPAddresses, 2)
	_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "db-2.example",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	_, err = ca.Issue("")
	require.Error(t, err)
}

func TestIssueValidAndPEM(t *testing.T) {
	ca, err := transporttest.NewCA("c")
	require.NoError(t, err)
	past := time.Now().Add(-time.Hour)
	cert, err := ca.IssueValid("n1", past.Add(-time.Hour), past)
	require.NoError(t, err)
	require.Equal(t, past.Truncate(time.Second).UTC(), cert.Leaf.NotAfter.UTC())

	certPEM, keyPEM, err := transporttest.EncodePEM(cert)
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	require.Equal(t, cert.Certificate, pair.Certificate)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.PEM()))
	require.True(t, pool.Equal(ca.Pool()))
}

func TestClusterOverTLS(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	c := transporttest.New(t, 2, transporttest.Options{CA: ca})
	require.NotNil(t, c.Configs[0].Security.TLS)
	c.HandleAll(verbEcho, transport.HandlerFunc(echo))
	resp, err := c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("over TLS"))
	require.NoError(t, err)
	require.Equal(t, "over TLS", string(resp))
}
