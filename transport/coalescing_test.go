package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// laneStats returns node's stats for one lane to peer.
func laneStats(t *testing.T, n *transport.Transport, peer string, lane routing.Lane) transport.ConnStats {
	t.Helper()
	for _, c := range n.Stats().Conns {
		if string(c.Peer) == peer && c.Lane == lane {
			return c
		}
	}
	t.Fatalf("no stats for %s %s", peer, lane)
	return transport.ConnStats{}
}

func TestCoalescingPerLaneAndAtRunTime(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbBlock: routing.Urgent}
	})
	var got atomic.Int64
	count := func(ctx context.Context, m *transport.Message) ([]byte, error) { got.Add(1); return nil, nil }
	handleAll(c, verbData, count)
	handleAll(c, verbBlock, count)
	send := func(verb transport.Verb) {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verb, []byte("x")))
	}
	send(verbData)
	send(verbBlock)
	waitFor(t, 5*time.Second, "delivered", func() bool { return got.Load() == 2 })
	assert.Equal(t, coalescing.NameAdaptive, laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing.Strategy, "the default for small")
	assert.Equal(t, coalescing.NameDisabled, laneStats(t, c.Nodes[0], "n2", routing.Urgent).Coalescing.Strategy, "urgent never waits")

	fixed, err := coalescing.ByName("fixed", 100*time.Microsecond)
	require.NoError(t, err)
	c.Nodes[0].SetCoalescing(func(routing.Lane) coalescing.Strategy { return fixed() })
	for range 100 {
		send(verbData)
	}
	waitFor(t, 5*time.Second, "delivered", func() bool { return got.Load() == 102 })
	small := laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing
	assert.Equal(t, coalescing.NameFixed, small.Strategy, "changed on a live connection")
	assert.Positive(t, small.Writes)
	assert.LessOrEqual(t, small.RequestedWait, time.Duration(small.Writes)*100*time.Microsecond,
		"no write asked to wait longer than the window")
}

// TestShutdownFlushesAtOnce: a strategy that would wait a second per write
// does not hold Shutdown: queued messages go out at once.
func TestShutdownFlushesAtOnce(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Lanes.Coalescing = func(routing.Lane) coalescing.Strategy { return coalescing.NewFixed(time.Second) }
	})
	var got atomic.Int64
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	for range 3 { // fewer than Fixed's "enough messages": it waits its window
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
	}
	// Far less than the one-second window the writer is waiting out.
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	require.NoError(t, c.Nodes[0].Shutdown(ctx))
	waitFor(t, 5*time.Second, "all delivered", func() bool { return got.Load() == 3 })
}
