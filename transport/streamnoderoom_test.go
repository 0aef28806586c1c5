package transport_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestALargeLaneBesideAnotherPeersStreamSessionLeavesTheSmallLanesTheirRoom:
// Limits promises that a peer's large messages never take the room of
// its small ones: the large lane holds at most Node − 2×PerConnection
// when Node is below PerPeer. A stream session of another peer's holds
// its buffer of the same Node for as long as it is open: here n3's
// session holds 12 MiB of 20, n1's large lane's stalled handlers the
// other 8, and a small request of n1's finds no room at all.
func TestALargeLaneBesideAnotherPeersStreamSessionLeavesTheSmallLanesTheirRoom(t *testing.T) {
	const (
		verbBulk   transport.Verb = 172 // one-way, on the large lane; its handler stalls
		verbStream transport.Verb = 173
	)
	stalled := newGate()
	defer stalled.open()
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 8 << 20
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 64 << 20, Node: 20 << 20}
		cfg.Streams.SessionBuffer = 12 << 20
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbBulk: routing.Large}
	})
	sender, receiver, other := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	receiver.Handle(verbBulk, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		return nil, stalled.wait(ctx)
	}))
	receiver.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	streamDone := make(chan struct{})
	receiver.HandleStream(verbStream, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		defer close(streamDone)
		_, _ = io.Copy(io.Discard, s)
	}))
	s, err := other.OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStream)
	require.NoError(t, err, "a session that leaves the largest message's room")
	defer func() {
		require.NoError(t, s.Close())
		<-streamDone
	}()
	_, err = s.Write([]byte("hello"))
	require.NoError(t, err)
	_, err = sender.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
	require.NoError(t, err)

	// Large messages to the stalled handlers until the receiver grants
	// no more.
	for range 12 {
		require.NoError(t, sender.Send(context.Background(), c.ID(1), verbBulk, make([]byte, 1<<20)))
	}
	waitFor(t, 10*time.Second, "the receiver's room full", func() bool {
		return receiver.Stats().InboundWaiters > 0
	})
	for i := range 3 {
		resp, err := sender.Request(ctxTimeout(t, 2*time.Second), c.ID(1), verbEcho, make([]byte, 1000))
		if errors.Is(err, context.DeadlineExceeded) {
			st := receiver.Stats()
			t.Fatalf("small request %d, with the large lane's handlers stalled: %v (receiver holds %d, %d waiters)",
				i, err, st.InboundHeld, st.InboundWaiters)
		}
		require.NoError(t, err, "small request %d", i)
		require.Len(t, resp, 1000)
	}
}
