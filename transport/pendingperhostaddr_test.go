package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestPendingHandshakesPerHostWithACustomListen: the per-host bound on
// unfinished handshakes (MaxPendingHandshakesPerHost) was keyed on the
// whole remote address, port included, whenever Config.Listen's
// connections report an address that is not a *net.TCPAddr (an
// in-memory network's, a wrapping listener's): each connection from one
// host was a host of its own, and one host could hold MaxPendingHandshakes
// unfinished handshakes, every other peer's refused. The port is now
// left out of such an address too.
func TestPendingHandshakesPerHostWithACustomListen(t *testing.T) {
	const perHost, idle = 2, 5
	c := transporttest.New(t, 1, transporttest.Options{InMemory: true, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Security.MaxPendingHandshakesPerHost = perHost
		cfg.Timeouts.Handshake = time.Minute // the idle sockets stay unfinished throughout
	}})
	node := c.Nodes[0]
	flooder := c.Network.Host("flooder")
	for range idle {
		conn, err := flooder.DialContext(context.Background(), "tcp", node.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
	}
	waitFor(t, 5*time.Second, "the connections accepted", func() bool {
		st := node.Stats()
		return st.InboundConnections+int(st.Refusals[transport.RefusedTooMany]) == idle
	})
	st := node.Stats()
	assert.Equal(t, perHost, st.InboundConnections, "unfinished handshakes held from one host")
	assert.Equal(t, uint64(idle-perHost), st.Refusals[transport.RefusedTooMany])
}
