package transport_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/certs"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// tlsFor returns a TLS config for node of ca's cluster.
func tlsFor(t testing.TB, ca *certs.CA, node string) *transport.TLSConfig {
	t.Helper()
	cert, err := ca.Issue(node)
	require.NoError(t, err)
	return &transport.TLSConfig{Server: ca.ServerConfig(cert), Client: ca.ClientConfig(cert)}
}

func tlsCluster(t *testing.T, n int, certFor func(i int) *transport.TLSConfig) *transporttest.Cluster {
	c := newCluster(t, n, func(i int, cfg *transport.Config) {
		cfg.Security.TLS = certFor(i)
		cfg.Timeouts.Handshake = 2 * time.Second
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	return c
}

func TestMutualTLSOnEveryLane(t *testing.T) {
	ca, err := certs.NewCA("test")
	require.NoError(t, err)
	c := tlsCluster(t, 2, func(i int) *transport.TLSConfig { return tlsFor(t, ca, []string{"n1", "n2"}[i]) })
	for _, size := range []int{10, 200 << 10} { // small and large lanes
		p := makePayload(0, 1, size)
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, p)
		require.NoError(t, err)
		assert.Equal(t, len(p), len(resp))
	}
	// Streams and files too.
	echoStreams(c)
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	_, err = s.Write([]byte("over TLS"))
	require.NoError(t, err)
	require.NoError(t, s.CloseWrite())
	got, err := io.ReadAll(s)
	require.NoError(t, err)
	assert.Equal(t, "over TLS", string(got))
	s.Close()

	files := receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 1<<20)
	n, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.NoError(t, err, "file transfer falls back to a buffered copy under TLS")
	assert.Equal(t, int64(len(data)), n)
	assert.NotContains(t, <-files, "error")
}

func TestTLSRefusesAnotherNodesCertificate(t *testing.T) {
	ca, err := certs.NewCA("test")
	require.NoError(t, err)
	// n1 presents a valid certificate of this cluster, but for node n3.
	c := tlsCluster(t, 2, func(i int) *transport.TLSConfig { return tlsFor(t, ca, []string{"n3", "n2"}[i]) })
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.ErrorIs(t, err, transport.ErrRefused)
	waitFor(t, 5*time.Second, "identity refusal counted", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedIdentity] > 0
	})
}

func TestTLSRefusesAnotherCA(t *testing.T) {
	ca, err := certs.NewCA("test")
	require.NoError(t, err)
	rogue, err := certs.NewCA("test")
	require.NoError(t, err)
	c := tlsCluster(t, 2, func(i int) *transport.TLSConfig {
		return tlsFor(t, []*certs.CA{rogue, ca}[i], []string{"n1", "n2"}[i])
	})
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.ErrorIs(t, err, transport.ErrRefused)
	waitFor(t, 5*time.Second, "TLS refusal counted", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedTLS] > 0
	})
}

func TestTLSRefusesPlainText(t *testing.T) {
	ca, err := certs.NewCA("test")
	require.NoError(t, err)
	c := tlsCluster(t, 2, func(i int) *transport.TLSConfig {
		if i == 0 {
			return nil // n1 speaks plain text
		}
		return tlsFor(t, ca, "n2")
	})
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.ErrorIs(t, err, transport.ErrRefused, "the plain-text node learns at once it is refused")
	waitFor(t, 5*time.Second, "plain text refused", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedTLS] > 0
	})
}

func TestTLSVerifyPeerHook(t *testing.T) {
	ca, err := certs.NewCA("test")
	require.NoError(t, err)
	c := tlsCluster(t, 2, func(i int) *transport.TLSConfig {
		cfg := tlsFor(t, ca, []string{"n1", "n2"}[i])
		cfg.VerifyPeer = func(cs tls.ConnectionState, clusterName string, node cluster.NodeID) error {
			return nil
		}
		return cfg
	})
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.NoError(t, err)
}

// TestHandshakeThatNeverFinishes and idle sockets: a connection that says
// nothing is cut at HandshakeTimeout, and a flood of them is capped, while
// a legitimate peer keeps being served.
func TestIdleConnectionsAreCappedAndTimedOut(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Handshake = 300 * time.Millisecond
		cfg.Security.MaxPendingHandshakesPerHost = 50
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	var idle []net.Conn
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	for range 1000 {
		conn, err := net.Dial("tcp", c.Nodes[1].Addr().String())
		require.NoError(t, err)
		idle = append(idle, conn)
	}
	waitFor(t, 10*time.Second, "the flood is capped", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedTooMany] >= 900
	})
	// The peer keeps being served. Its own connections are already open,
	// or wait for the idle ones to time out.
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(resp))
	waitFor(t, 10*time.Second, "unfinished handshakes time out", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedTimeout] >= 40
	})
}
