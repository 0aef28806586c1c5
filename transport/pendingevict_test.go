package transport_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// idleConns opens n connections to node from host that never say a
// word: handshakes left unfinished.
func idleConns(t *testing.T, c *transporttest.Cluster, host string, node *transport.Transport, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		conn, err := c.Network.Host(host).DialContext(context.Background(), "tcp", node.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		conns[i] = conn
	}
	return conns
}

// closedByNode reports whether the node has closed conn, waiting for it
// at most wait.
func closedByNode(t *testing.T, conn net.Conn, wait time.Duration) bool {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(wait)))
	_, err := conn.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	require.ErrorIs(t, err, io.EOF)
	return true
}

// TestPendingHandshakesFromFewHostsLeaveRoomForOthers: two hosts whose
// sockets never finish their handshakes, each within
// MaxPendingHandshakesPerHost, filled MaxPendingHandshakes between them,
// and every other peer was refused until those timed out (Timeouts.Handshake),
// the member's request with them. With the table full, a host holding
// fewer unfinished handshakes now takes the place of the oldest of the
// host holding the most.
func TestPendingHandshakesFromFewHostsLeaveRoomForOthers(t *testing.T) {
	const total, perHost = 6, 3
	c := transporttest.New(t, 2, transporttest.Options{InMemory: true, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Security.MaxPendingHandshakes = total
		cfg.Security.MaxPendingHandshakesPerHost = perHost
		cfg.Timeouts.Handshake = time.Minute // the idle sockets stay unfinished throughout
	}})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	node := c.Nodes[1]
	first := idleConns(t, c, "flooder-1", node, perHost)
	idleConns(t, c, "flooder-2", node, perHost)
	waitFor(t, 5*time.Second, "the unfinished handshakes held", func() bool { return node.Stats().InboundConnections == total })

	got, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("through"))
	require.NoError(t, err, "a member's request while strangers hold every unfinished handshake")
	assert.Equal(t, "through", string(got))
	assert.True(t, closedByNode(t, first[0], 5*time.Second), "the oldest unfinished handshake of a host holding the most is closed")
	// Counted by the goroutine that was serving it, once its read fails:
	// after the close the test saw.
	waitFor(t, 5*time.Second, "a handshake cut short to make room counted", func() bool {
		return node.Stats().Refusals[transport.RefusedTooMany] >= 1
	})
}

// TestPendingHandshakesOfEqualHostsAreNotCutShort: with every host
// holding as many unfinished handshakes as the newcomer would, a new one
// is refused and none is cut short for it: the newcomer's host would
// only trade places with another.
func TestPendingHandshakesOfEqualHostsAreNotCutShort(t *testing.T) {
	const total = 4
	c := transporttest.New(t, 1, transporttest.Options{InMemory: true, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Security.MaxPendingHandshakes = total
		cfg.Timeouts.Handshake = time.Minute
	}})
	node := c.Nodes[0]
	var held []net.Conn
	for i := range total {
		held = append(held, idleConns(t, c, fmt.Sprintf("host-%d", i), node, 1)...)
	}
	waitFor(t, 5*time.Second, "the unfinished handshakes held", func() bool { return node.Stats().InboundConnections == total })
	late := idleConns(t, c, "host-late", node, 1)
	assert.True(t, closedByNode(t, late[0], 5*time.Second), "a newcomer when every host holds one is refused")
	for i, conn := range held {
		assert.False(t, closedByNode(t, conn, 50*time.Millisecond), "host-%d's handshake cut short", i)
	}
	st := node.Stats()
	assert.Equal(t, total, st.InboundConnections)
	assert.Equal(t, uint64(1), st.Refusals[transport.RefusedTooMany])
}
