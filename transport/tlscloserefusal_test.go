package transport_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestCloseRefusesNoHandshakeInFlight: a node's own Close ends the
// handshakes it is in the middle of, which is no refusal of the peers':
// Stats.Refusals and its log say what peers did wrong. A peer halfway
// through its TLS handshake was counted as a TLS failure, and one whose
// TLS handshake was done, waiting to send its Hello, as malformed ("not a
// valid Hello"), each logged as a refused connection, at every restart
// that met a peer dialling it. (The second peer's handshake is done on
// its side when tls.Dial returns; the node may still be finishing its
// own, so before the fix it counted tls or malformed, either failing.)
func TestCloseRefusesNoHandshakeInFlight(t *testing.T) {
	ca := newCA(t, "test")
	logs := &capturedLogs{}
	c := transporttest.New(t, 1, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
		cfg.Security.TLS = tlsFor(t, ca, "n1")
		cfg.Timeouts.Handshake = time.Minute // only Close ends the handshakes below
		cfg.Telemetry.Logger = logs.logger()
	}})
	n1 := c.Nodes[0]
	addr := n1.Addr().String()

	// Halfway through its TLS handshake: the ClientHello's first bytes.
	half, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer half.Close()
	_, err = half.Write([]byte{0x16, 3, 1, 0, 200, 1, 0})
	require.NoError(t, err)
	// Its TLS handshake done, its Hello not yet sent.
	cert, err := ca.Issue("n2")
	require.NoError(t, err)
	done, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	require.NoError(t, err)
	defer done.Close()
	waitFor(t, 5*time.Second, "both handshakes under way", func() bool { return n1.Stats().InboundConnections == 2 })

	require.NoError(t, n1.Close())
	st := n1.Stats()
	assert.Zero(t, st.InboundRefused, "handshakes ended by this node's Close counted as refusals: %v", st.Refusals)
	assert.NotContains(t, logs.String(), "connection refused")
	if t.Failed() {
		t.Log(logs.String())
	}
}
