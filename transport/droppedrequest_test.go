package transport_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// OnDropped is given requests too, whose callers also get the error from
// Request; a hint store keeps only what no caller was told of. Request
// says which a dropped message was.
func TestDroppedRequestsSayTheyAreRequests(t *testing.T) {
	var mu sync.Mutex
	dropped := map[uint64]transport.DroppedMessage{}
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.OnDropped = func(m transport.DroppedMessage) {
			mu.Lock()
			defer mu.Unlock()
			m.Payload = nil // valid only during the call
			dropped[m.ID] = m
		}
	})
	n := c.Nodes[0]
	c.Members.Add(cluster.Member{ID: "down", Addr: closedAddr(t)})

	_, err := n.Request(ctxTimeout(t, 5*time.Second), "down", verbEcho, []byte("read"))
	require.Error(t, err, "no one answers at the peer's address")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.NoError(t, n.Send(ctx, "down", verbData, []byte("hint")))

	waitFor(t, 10*time.Second, "both dropped", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(dropped) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	for _, m := range dropped {
		switch m.Verb {
		case verbEcho:
			assert.True(t, m.Request, "the request, dropped: %+v", m)
		case verbData:
			assert.False(t, m.Request, "the one-way message, dropped: %+v", m)
		default:
			t.Errorf("dropped %+v", m)
		}
		assert.False(t, m.Response)
	}
}
