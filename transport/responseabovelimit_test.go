package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestResponsesBesideOneAboveTheConnectionLimitAreAnswered: a response
// larger than its connection's outbound limit (24 MiB against the default
// 4 MiB PerConnection, within MaxMessageSize, and more than the sockets
// between the nodes take in while the proxy holds them) is taken, as the one
// message an empty connection may hold above its limit, and is still
// being written — its requester's back channel congested — when another
// request on that connection is answered. That answer must reach its
// caller, or ErrOverloaded in its place, once the back channel moves.
// It got nothing: the small answer did not fit beside the big one, nor
// did the failure that stands in for it within 64 KiB beyond the limit,
// counted from the limit rather than from what the connection held, so
// both were dropped and the caller waited for its whole deadline — every
// caller of that connection, for as long as the big response was on its
// way.
func TestResponsesBesideOneAboveTheConnectionLimitAreAnswered(t *testing.T) {
	const (
		verbBigAnswer transport.Verb = 171
		verbSmall     transport.Verb = 172
		bigAnswer                    = 24 << 20
	)
	var droppedResponses atomic.Int64
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 30 * time.Second // n1 hears nothing of n2's while paused
		if i == 1 {
			cfg.OnDropped = func(d transport.DroppedMessage) {
				if d.Response {
					droppedResponses.Add(1)
				}
			}
		}
	})
	caller, responder := c.Nodes[0], c.Nodes[1]
	require.Less(t, bigAnswer, c.Configs[1].Memory.MaxMessageSize, "the big answer is a legal message")
	require.Greater(t, int64(bigAnswer), transport.DefaultLimits().PerConnection, "the big answer is above its connection's limit")
	responder.Handle(verbBigAnswer, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return make([]byte, bigAnswer), nil
	}))
	responder.Handle(verbSmall, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	proxy := newPausableProxy(t, responder.Addr().String())
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: proxy.addr}) // n1 reaches n2 through the proxy
	_, err := caller.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbSmall, []byte("warm"))
	require.NoError(t, err)
	// Its writer gives back the warm-up answer's room once the write has
	// returned, which may be after the caller has it: the connection must
	// hold nothing for the big answer to be its one above the limit.
	waitFor(t, 10*time.Second, "the warm-up answer's room back", func() bool {
		return responder.Stats().OutboundBytes == 0
	})

	proxy.pause() // n2's bytes to n1 (its answers) are held back; n1's requests go on
	big := make(chan error, 1)
	go func() {
		_, err := caller.Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbBigAnswer, []byte("big"))
		big <- err
	}()
	waitFor(t, 10*time.Second, "the big answer taken and on its way", func() bool {
		return responder.Stats().OutboundBytes >= bigAnswer
	})
	held := responder.Stats().OutboundBytes

	small := make(chan error, 1)
	go func() {
		resp, err := caller.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbSmall, []byte("small"))
		if err == nil && string(resp) != "small" {
			t.Errorf("got %q", resp)
		}
		small <- err
	}()
	// The small request is handled, and its answer (or the failure in its
	// place) queued beside the big one, or written between its parts, or
	// dropped.
	waitFor(t, 10*time.Second, "the small request answered", func() bool {
		return droppedResponses.Load() > 0 || responder.Stats().OutboundBytes > held ||
			laneStats(t, responder, string(c.ID(0)), routing.Small).ResponsesSent >= 2
	})
	proxy.resume()

	require.NoError(t, within(t, big, 30*time.Second, "the big answer"))
	err = within(t, small, 30*time.Second, "the small answer")
	if err != nil {
		assert.ErrorIs(t, err, transport.ErrOverloaded, "answered, or told overloaded at once; not left to its deadline")
	}
	assert.Zero(t, droppedResponses.Load(), "no response dropped")
	assert.Zero(t, laneStats(t, responder, string(c.ID(0)), routing.Small).Dropped[transport.ReasonOverloaded], "no response dropped for want of room")
}
