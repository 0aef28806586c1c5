package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestResponsesReachAPausedNode: a node whose inbound connections from a
// peer are all paused — its handlers stalled, its capacity full of that
// peer's messages — still gets that peer's responses to its own
// requests, small and large: they come back on its own connections.
func TestResponsesReachAPausedNode(t *testing.T) {
	g := newGate()
	defer g.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = tightInbound
		cfg.Memory.MaxMessageSize = 256 << 10
	})
	c.Nodes[0].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))

	// n2 floods n1 on the small and large lanes until n1 stops reading.
	flood := func(size int) {
		for range 2000 {
			if err := c.Nodes[1].Send(context.Background(), c.ID(0), verbData, make([]byte, size)); err != nil {
				require.ErrorIs(t, err, transport.ErrOverloaded)
			}
		}
	}
	flood(1000)
	flood(100 << 10)
	paused := func(lane routing.Lane) bool {
		for _, cs := range c.Nodes[0].Stats().Conns {
			if cs.Peer == c.ID(1) && cs.Lane == lane && cs.Throttled > 0 {
				return true
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, "n1 paused on both lanes", func() bool { return paused(routing.Small) && paused(routing.Large) })

	for _, size := range []int{10, 100 << 10} {
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, make([]byte, size))
		require.NoError(t, err, "a request of %d bytes", size)
		assert.Len(t, resp, size)
	}
	assert.True(t, paused(routing.Small) && paused(routing.Large))
}

// TestStrangerGetsItsResponse: a node the responder's membership does not
// list (a client, or a node not gossiped yet) gets its responses when the
// responder accepts unknown peers, and is refused when it does not.
func TestStrangerGetsItsResponse(t *testing.T) {
	for _, accept := range []bool{true, false} {
		c := newCluster(t, 1, func(_ int, cfg *transport.Config) { cfg.Security.AcceptUnknownPeers = accept })
		handleAll(c, verbEcho, func(_ context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
		stranger, err := transport.New(transporttest.Config("client", "test", c.Members))
		require.NoError(t, err)
		stranger.Start()
		resp, err := stranger.Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("hi"))
		if accept {
			require.NoError(t, err)
			assert.Equal(t, "hi", string(resp))
		} else {
			assert.Error(t, err)
		}
		stranger.Close()
	}
}
