package gossip_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/transport"
)

// memNet delivers each digest straight to the receiver's handler, as the
// transport would, and returns the handler's error.
type memNet map[cluster.NodeID]*gossip.Gossiper

func (n memNet) Send(ctx context.Context, to cluster.NodeID, verb transport.Verb, payload []byte) error {
	_, err := n[to].ServeMessage(ctx, &transport.Message{Verb: verb, Payload: payload})
	return err
}

// A cluster larger than one digest may carry (MaxDigestEntries, which the
// receiver enforces) must still gossip: a node's table past the cap goes
// out over several rounds, never as a digest every receiver refuses.
func TestGossipConvergesPastMaxDigestEntries(t *testing.T) {
	const nodes = gossip.MaxDigestEntries + 1000
	now := t0
	clock := func() time.Time { return now }
	net := memNet{}
	for _, id := range []cluster.NodeID{"a", "b"} {
		g, err := gossip.New(gossip.Config{
			Self: id, Sender: net, Generation: 1, Now: clock,
			Peers: func() []cluster.NodeID { return []cluster.NodeID{"a", "b"} },
		})
		require.NoError(t, err)
		net[id] = g
	}
	// a has heard of every node, in digests within the cap.
	batch := map[cluster.NodeID]gossip.Entry{}
	for i := range nodes {
		batch[cluster.NodeID(fmt.Sprintf("n%05d", i))] = gossip.Entry{Generation: 1, Heartbeat: 1}
		if len(batch) == gossip.MaxDigestEntries || i == nodes-1 {
			_, err := net["a"].ServeMessage(t.Context(), &transport.Message{Verb: gossip.Verb, Payload: gossip.AppendDigest(nil, batch)})
			require.NoError(t, err)
			clear(batch)
		}
	}
	require.Len(t, net["a"].Entries(), nodes+1)

	for round := 1; len(net["b"].Entries()) < nodes+2; round++ {
		require.LessOrEqual(t, round, 3, "b knows %d of %d entries", len(net["b"].Entries()), nodes+2)
		now = now.Add(gossip.DefaultInterval)
		for _, id := range []cluster.NodeID{"a", "b"} {
			_, err := net[id].Round(t.Context())
			require.NoError(t, err, "round %d of %s", round, id)
		}
	}
	require.Len(t, net["a"].Entries(), nodes+2)
}
