package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestShutdownAnswersASmallRequestWaitingForRoom: n2's small-lane reader
// waits for inbound room (OverloadPause), the room held by a one-way
// message whose handler is stalled, with a request's frame next: read
// (3 bytes: a frame read before its room is taken) or its header alone
// (8 KiB), when n2's Shutdown begins. Shutdown waited for the requests
// being handled, not for this one, and closed the connection under it:
// its caller read a reset ("closed by peer"), not knowing whether it had
// been handled. It must be answered "shutting down" (ErrOverloaded), as
// a large request waiting for room is, counted as ReasonClosed, so that
// its caller asks another node at once.
func TestShutdownAnswersASmallRequestWaitingForRoom(t *testing.T) {
	t.Run("read", func(t *testing.T) { testShutdownPausedRequest(t, []byte("ask")) })
	t.Run("unread", func(t *testing.T) { testShutdownPausedRequest(t, make([]byte, 8<<10)) })
}

func testShutdownPausedRequest(t *testing.T, payload []byte) {
	const verbAsk, verbPut transport.Verb = 241, 242
	held := newGate()
	defer held.open()
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbAsk: routing.Small, verbPut: routing.Small}
		cfg.Memory.MaxMessageSize = 64 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 64 << 10, PerPeer: 256 << 10, Node: 1 << 20}
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	n2.Handle(verbAsk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return []byte("ok"), nil
	}))
	n2.Handle(verbPut, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		return nil, held.wait(ctx)
	}))

	// A one-way message takes the connection's room (64 KiB, and its
	// work's weight beyond), and its handler holds it.
	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, make([]byte, 60<<10)))
	waitFor(t, 10*time.Second, "the one-way message holding the room", func() bool {
		return n2.Stats().InboundHeld >= 64<<10
	})
	answered := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbAsk, payload)
		answered <- err
	}()
	waitFor(t, 10*time.Second, "the request waiting for room", func() bool {
		return n2.Stats().Total().Throttled > 0
	})

	shut := make(chan error, 1)
	go func() { shut <- n2.Shutdown(ctxTimeout(t, 5*time.Second)) }()
	err := within(t, answered, 10*time.Second, "the request's answer")
	require.ErrorIs(t, err, transport.ErrOverloaded, "answered %v", err)
	require.ErrorContains(t, err, "shutting down")
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonClosed], "counted closed once")
	held.open()
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))
}
