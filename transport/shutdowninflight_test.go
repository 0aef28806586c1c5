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

// TestShutdownReadsWhatPeersWrote: n1 has written one-way messages that
// wait, unread, in n2's socket (n2's reader runs an Inline handler that
// is stalled) when n2 begins a Shutdown. Shutdown drained what n2 had to
// send and closed the connection with them unread: n1 counted them sent,
// n2 counted them nowhere, and n1's hint store, fed by OnDropped, never
// heard of them — a graceful restart lost writes silently. Shutdown
// closes its side of the connection and reads on until n1, seeing that,
// has closed its own: every message n1 wrote is received by n2 or
// counted dropped there.
func TestShutdownReadsWhatPeersWrote(t *testing.T) {
	const verbPut transport.Verb = 243
	const behind = 99
	held := newGate()
	defer held.open()
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbPut: routing.Small}
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	entered := make(chan struct{}, behind+1)
	n2.Handle(verbPut, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		entered <- struct{}{}
		return nil, held.wait(ctx)
	}), transport.Inline())

	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, make([]byte, 1<<10)))
	within(t, entered, 10*time.Second, "the first message's handler")
	for range behind {
		require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, make([]byte, 1<<10)))
	}
	waitFor(t, 10*time.Second, "every message written", func() bool {
		return laneStats(t, n1, string(c.ID(1)), routing.Small).MessagesSent == behind+1
	})

	shut := make(chan error, 1)
	go func() { shut <- n2.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	// Once n1 has seen the connection end, the handler goes on.
	waitFor(t, 10*time.Second, "n1 seeing the connection end", func() bool {
		return !laneStats(t, n1, string(c.ID(1)), routing.Small).Connected
	})
	held.open()
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))

	in := n2.Stats().Total()
	var dropped uint64
	for _, d := range in.DroppedInbound {
		dropped += d
	}
	assert.Equal(t, uint64(behind+1), in.MessagesReceived+dropped,
		"of %d messages written: %d received, %d dropped by n2", behind+1, in.MessagesReceived, dropped)
}
