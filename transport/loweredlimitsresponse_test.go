package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestResponsesAreAnsweredAfterOutboundLimitsAreLowered: a node holds
// 1 MiB of its own sends, queued for a third node that stopped reading,
// when SetLimits lowers its outbound Node limit to 640 KiB. A request
// from another peer then gets its answer, or at least ErrOverloaded in its
// place, at once. It got nothing: the response did not fit, nor did the
// failure that stands in for it within 64 KiB beyond the limits, so
// both were dropped and the caller waited for its whole deadline — every
// caller, for as long as the sends held the node above the lowered limit.
func TestResponsesAreAnsweredAfterOutboundLimitsAreLowered(t *testing.T) {
	lowered := transport.Limits{PerConnection: 256 << 10, PerPeer: 512 << 10, Node: 640 << 10}
	stalled := newGate()
	defer stalled.open()
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 128 << 10
		cfg.Memory.Inbound = tightInbound
		if i == 1 {
			cfg.Memory.Outbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 2 << 20, Node: 2 << 20}
		}
	})
	caller, responder := c.Nodes[0], c.Nodes[1]
	c.Nodes[2].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		return nil, stalled.wait(ctx)
	}))
	responder.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	_, err := caller.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
	require.NoError(t, err)

	// The responder's sends to the stalled node fill their connection's
	// 1 MiB.
	waitFor(t, 20*time.Second, "the responder's sends to fill their connection", func() bool {
		for range 100 {
			err := responder.Send(context.Background(), c.ID(2), verbData, make([]byte, 1000))
			if errors.Is(err, transport.ErrOverloaded) {
				return true
			}
		}
		return false
	})
	held := responder.Stats().OutboundBytes
	require.Greater(t, held, lowered.Node+64<<10, "the responder holds more than the lowered limit and the failures' margin")
	require.NoError(t, responder.SetLimits(lowered, transport.Limits{}))

	for i := range 5 {
		start := time.Now()
		resp, err := caller.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
		if err == nil {
			assert.Equal(t, []byte("hello"), resp)
		} else {
			require.ErrorIs(t, err, transport.ErrOverloaded, "request %d, after %v", i, time.Since(start))
		}
	}
	assert.LessOrEqual(t, responder.Stats().OutboundBytes, held+64<<10, "the failures stay within their margin beyond what was held")
}
