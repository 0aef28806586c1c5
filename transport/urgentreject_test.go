package transport_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestUrgentFrameOnAFullNodeIsTakenUnderOverloadReject: a small frame on
// the urgent lane that finds no room is taken beyond the limits, so that
// control traffic (a heartbeat, gossip) is not held up by the room a
// peer's requests hold (transport/doc.go). Only OverloadPause did so: under
// OverloadReject the gossip of a peer whose requests filled the node was
// rejected, as though it were one more request.
func TestUrgentFrameOnAFullNodeIsTakenUnderOverloadReject(t *testing.T) {
	const verbScan, verbGossip transport.Verb = 211, 212
	g := newGate()
	defer g.open()
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
		cfg.Memory.InboundOverload = transport.OverloadReject
		cfg.Memory.Outbound = transport.Limits{PerConnection: 16 << 20, PerPeer: 16 << 20, Node: 64 << 20}
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbGossip: routing.Urgent}
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	started := make(chan struct{})
	n2.Handle(verbScan, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		return nil, g.wait(ctx) // holds its room until the gate opens
	}), transport.Concurrent(1000))
	gossiped := make(chan struct{}, 1)
	n2.Handle(verbGossip, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		gossiped <- struct{}{}
		return nil, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Requests, one at a time, each running until the gate opens, until n2
	// refuses one; then smaller ones, the last as small as the gossip:
	// n1's room there is full.
	var calls sync.WaitGroup
	defer calls.Wait()
	defer g.open()
	for _, size := range []int{60 << 10, 4 << 10, 256, 8} {
		for refused := false; !refused; {
			failed := make(chan error, 1)
			calls.Go(func() {
				_, err := n1.Request(ctx, c.ID(1), verbScan, make([]byte, size))
				failed <- err
			})
			select {
			case <-started:
			case err := <-failed:
				var remote *transport.RemoteError
				require.True(t, errors.As(err, &remote) && errors.Is(err, transport.ErrOverloaded),
					"a request of %d bytes failed otherwise than refused by n2: %v", size, err)
				refused = true
			case <-ctx.Done():
				t.Fatalf("a request of %d bytes neither ran nor was refused", size)
			}
		}
	}

	require.NoError(t, n1.Send(ctx, c.ID(1), verbGossip, []byte("gossip")))
	within(t, gossiped, 10*time.Second, "the gossip handled while the node is full")
}
