package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestALargeLaneWaitingForGrantsLeavesTheSmallLanesTheirRoom: the
// receiver's large-message handlers stall, so it grants no more large
// messages, and the sender's large lane fills while they wait for their
// grants. Limits promises that "a peer's large messages never take the
// room of its small ones": the large lane may hold PerPeer − 2 ×
// PerConnection. But a node's own sends also leave an eighth of PerPeer to
// its responses, and with that reserve the large lane alone could take
// all the room sends have at the peer (with the default limits exactly:
// 56 MiB of 64 MiB, less 8 MiB for responses). Every small request to the
// peer then failed with ErrOverloaded (with WaitForCapacity, waited behind
// the large lane) although the peer answered on its small lane at once.
// With Node below PerPeer, the large lane's share of PerPeer could take
// all the room the node's sends have: the same happened at the node's
// limit.
func TestALargeLaneWaitingForGrantsLeavesTheSmallLanesTheirRoom(t *testing.T) {
	inbound := transport.Limits{PerConnection: 64 << 10, PerPeer: 256 << 10, Node: 256 << 10}
	for _, tc := range []struct {
		name              string
		outbound, inbound transport.Limits
	}{
		{"PerPeer binds", transport.Limits{PerConnection: 64 << 10, PerPeer: 1 << 20, Node: 4 << 20}, inbound},
		{"Node below PerPeer", transport.Limits{PerConnection: 64 << 10, PerPeer: 4 << 20, Node: 1 << 20}, inbound},
		// The receiver's large lane held the node's whole inbound room,
		// and the small lane's frames waited for it.
		{"inbound Node below PerPeer", transport.Limits{PerConnection: 64 << 10, PerPeer: 1 << 20, Node: 4 << 20},
			transport.Limits{PerConnection: 64 << 10, PerPeer: 1 << 20, Node: 256 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) { testLargeLaneLeavesSmallLanesRoom(t, tc.outbound, tc.inbound) })
	}
}

func testLargeLaneLeavesSmallLanesRoom(t *testing.T, outbound, inbound transport.Limits) {
	const verbBulk transport.Verb = 170 // one-way, on the large lane; its handler stalls
	stalled := newGate()
	defer stalled.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 64 << 10
		cfg.Memory.Outbound = outbound
		cfg.Memory.Inbound = inbound
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbBulk: routing.Large}
	})
	sender, receiver := c.Nodes[0], c.Nodes[1]
	receiver.Handle(verbBulk, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		return nil, stalled.wait(ctx)
	}))
	receiver.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	_, err := sender.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
	require.NoError(t, err)

	largePending := func() uint64 {
		for _, cs := range sender.Stats().Conns {
			if cs.Peer == c.ID(1) && cs.Lane == routing.Large {
				return cs.PendingBytes
			}
		}
		return 0
	}
	// fill sends size bytes on the large lane until one is refused.
	fill := func(size int) bool {
		for range 10_000 {
			err := sender.Send(context.Background(), c.ID(1), verbBulk, make([]byte, size))
			if errors.Is(err, transport.ErrOverloaded) {
				return true
			}
			require.NoError(t, err)
		}
		return false
	}
	// The receiver grants large messages until its room is held by the
	// stalled handlers, and then grants none: the sender's large lane
	// stops draining. It counts as full when sends are refused, the
	// receiver has a large message waiting for room, and the lane's bytes
	// did not move, three looks in a row.
	var last uint64
	steady := 0
	waitFor(t, 20*time.Second, "the sender's large lane to fill", func() bool {
		refused := fill(16 << 10)
		now := largePending()
		if refused && receiver.Stats().InboundWaiters > 0 && now == last {
			steady++
		} else {
			steady = 0
		}
		last = now
		return steady == 3
	})
	// Nothing drains the large lane now: fill the rest of its room with
	// the smallest messages.
	require.True(t, fill(1))

	// The small lane holds nothing, and its peer answers on it at once.
	for i := range 5 {
		resp, err := sender.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, make([]byte, 1000))
		require.NoError(t, err, "small request %d, with the large lane full", i)
		require.Len(t, resp, 1000)
	}
}
