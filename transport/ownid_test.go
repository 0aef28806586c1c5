package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestCallsToThisNodesOwnIDFailAtOnce: a coordinator that is one of its
// own replicas (a key's replica set includes it) and sends to its own ID.
// Send returned nil for a message that could never be delivered: the lane
// dialled this node's own listener, which refused the handshake as a peer
// claiming its ID (Refusals[RefusedSelf], an impostor's sign), and the
// message was dropped later, to OnDropped, as refused by a peer. Request,
// OpenStream and SendFile dialled too. Each now fails at the call with
// ErrRefused, dials nothing, and leaves no entry for this node in Stats.
func TestCallsToThisNodesOwnIDFailAtOnce(t *testing.T) {
	var hooked atomic.Int64
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.OnDropped = func(transport.DroppedMessage) { hooked.Add(1) }
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	n1, self := c.Nodes[0], c.ID(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err := n1.Send(ctx, self, verbEcho, []byte("m"))
	assert.Error(t, err, "Send to this node's own ID")
	assert.ErrorIs(t, err, transport.ErrRefused)
	var op *transport.OpError
	assert.ErrorAs(t, err, &op)

	_, err = n1.Request(ctx, self, verbEcho, []byte("q"))
	assert.ErrorIs(t, err, transport.ErrRefused)
	_, err = n1.OpenStream(ctx, self, verbRepair)
	assert.ErrorIs(t, err, transport.ErrRefused)
	src, data := tempFile(t, 1024)
	_, err = n1.SendFile(ctx, self, verbBootstrap, src, 0, int64(len(data)))
	assert.ErrorIs(t, err, transport.ErrRefused)

	// The peer is still served.
	_, err = n1.Request(ctx, c.ID(1), verbEcho, []byte("q"))
	require.NoError(t, err)

	st := n1.Stats()
	assert.Zero(t, st.InboundRefused, "refused handshakes: %v", st.Refusals)
	for _, cs := range st.Conns {
		assert.NotEqual(t, self, cs.Peer, "an entry for this node itself: %+v", cs)
	}
	for _, p := range st.Peers {
		assert.NotEqual(t, self, p.Peer, "this node listed among its peers")
	}
	assert.Zero(t, hooked.Load(), "messages handed to OnDropped")
}
