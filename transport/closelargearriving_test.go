package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestALargeMessageCutOffByCloseIsDroppedAsClosed: a large one-way
// message part of which has arrived when its receiver closes is dropped
// as closed, like everything else Close cuts off (a batch frame waiting
// for room, a message waiting for its handler, a response), not as a
// connection reset.
func TestALargeMessageCutOffByCloseIsDroppedAsClosed(t *testing.T) {
	const (
		verbBulk   transport.Verb = 154 // one-way, large: its part arrives, the rest never does
		verbMarker transport.Verb = 155 // one-way, empty: read after the part
	)
	c := newCluster(t, 1, nil)
	node := c.Nodes[0]
	node.Handle(verbBulk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	marked := make(chan struct{})
	node.Handle(verbMarker, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		close(marked)
		return nil, nil
	}))

	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	conn := dialAs(node.Addr().String(), "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	const length = 16
	bulk := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbBulk), PayloadLength: length})
	_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, bulk), bulk...))
	require.NoError(t, err)
	require.True(t, awaitBack(conn, wire.FrameGrant, 1))
	// Half of its payload, then an empty message the reader hands over
	// only once it has read that half.
	part := make([]byte, length/2)
	out := append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...)
	marker := wire.AppendHeader(nil, &wire.Header{ID: 2, Verb: uint32(verbMarker)})
	out = append(append(out, wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 2, marker)...), marker...)
	_, err = conn.Write(out)
	require.NoError(t, err)
	within(t, marked, 10*time.Second, "the marker's handler")

	require.NoError(t, node.Close())
	var received uint64
	var dropped [transport.NumReasons]uint64
	for _, s := range node.Stats().Conns {
		if s.Peer == "mallory" {
			received += s.MessagesReceived
			for r, n := range s.DroppedInbound {
				dropped[r] += n
			}
		}
	}
	assert.Equal(t, uint64(1), received, "the marker")
	assert.Equal(t, uint64(1), dropped[transport.ReasonClosed], "dropped as closed: %v", dropped)
	assert.Zero(t, dropped[transport.ReasonConnectionReset], "dropped as reset: %v", dropped)
}
