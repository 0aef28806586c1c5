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

// TestALargeLaneBesideAStreamSessionLeavesTheSmallLanesTheirRoom: Limits
// promises that a peer's large messages never take the room of its small
// ones: the large lane holds at most min(PerPeer, Node) − 2×PerConnection.
// A stream session accepted beside it holds its buffer of the same
// PerPeer (its own peer's) or Node (any peer's) for as long as it is
// open, and was not subtracted: here the session holds 12 MiB of 20, the
// large lane's stalled handlers the other 8, and a small request of the
// large lane's peer finds no room at all.
func TestALargeLaneBesideAStreamSessionLeavesTheSmallLanesTheirRoom(t *testing.T) {
	for _, tt := range []struct {
		name   string
		nodes  int
		opener int // the node that opens the stream session to node 1
		limits transport.Limits
	}{
		{"the peer's own session, PerPeer binding", 2, 0, transport.Limits{PerConnection: 1 << 20, PerPeer: 20 << 20, Node: 64 << 20}},
		{"another peer's session, Node binding", 3, 2, transport.Limits{PerConnection: 1 << 20, PerPeer: 64 << 20, Node: 20 << 20}},
	} {
		t.Run(tt.name, func(t *testing.T) { largeLaneBesideAStreamSession(t, tt.nodes, tt.opener, tt.limits) })
	}
}

func largeLaneBesideAStreamSession(t *testing.T, nodes, opener int, inbound transport.Limits) {
	const (
		verbBulk   transport.Verb = 170 // one-way, on the large lane; its handler stalls
		verbStream transport.Verb = 171
	)
	stalled := newGate()
	defer stalled.open()
	c := newCluster(t, nodes, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 8 << 20
		cfg.Memory.Inbound = inbound
		cfg.Streams.SessionBuffer = 12 << 20
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbBulk: routing.Large}
	})
	sender, receiver := c.Nodes[0], c.Nodes[1]
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
	s, err := c.Nodes[opener].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStream)
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
