package transport_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestShutdownDoesNotWaitForAPeerItCannotDial: a rolling restart reaches a
// node while another member is down, with one-way messages (a small and a
// large one, no deadline) queued for that member. Shutdown waited for them
// to be written, which a peer that refuses every dial never allows: it
// returned only when its ctx ended, and never under a ctx without
// deadline. What is queued for a peer that cannot be dialled now fails
// at the first failed dial once Shutdown has begun, counted once and
// handed to OnDropped (a hint to store), and Shutdown drains.
func TestShutdownDoesNotWaitForAPeerItCannotDial(t *testing.T) {
	var mu sync.Mutex
	var dropped []transport.DroppedMessage
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.OnDropped = func(d transport.DroppedMessage) {
			mu.Lock()
			defer mu.Unlock()
			dropped = append(dropped, d)
		}
	})
	n1 := c.Nodes[0]
	require.NoError(t, c.Nodes[1].Close()) // down: its port refuses every dial
	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbData, []byte("no deadline")))
	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbData, make([]byte, 200<<10)))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	assert.NoError(t, n1.Shutdown(ctx), "Shutdown with messages queued for a peer that refuses every dial")

	tot := n1.Stats().Total()
	var failed uint64
	for _, d := range tot.Dropped {
		failed += d
	}
	assert.Equal(t, uint64(2), tot.MessagesSent+failed, "outcomes: sent %d, dropped %v", tot.MessagesSent, tot.Dropped)
	assert.Equal(t, uint64(2), tot.Dropped[transport.ReasonConnectionReset], "dropped %v", tot.Dropped)
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, dropped, 2, "handed to OnDropped")
}
