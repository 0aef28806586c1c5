package transporttest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestQuietDoesNotSeeBytesUnderWay pins what Quiet's doc says: a message
// written and held back on the network by a Delay is held by no node, so
// Quiet holds (and WaitQuiet returns) before it reaches its handler,
// which it does once the delay has passed.
func TestQuietDoesNotSeeBytesUnderWay(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{InMemory: true})
	var delivered atomic.Int64
	c.HandleAll(verbEcho, transport.HandlerFunc(echo))
	c.HandleAll(verbOneWay, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		delivered.Add(1)
		return nil, nil
	}))
	_, err := c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("connect"))
	require.NoError(t, err)
	require.NoError(t, c.WaitQuiet(ctxFor(t)))

	const delay = 2 * time.Second
	c.Network.Delay("n1", "n2", delay)
	sent := c.Nodes[0].Stats().Total().MessagesSent
	start := time.Now()
	require.NoError(t, c.Nodes[0].Send(ctxFor(t), c.ID(1), verbOneWay, []byte("under way")))
	require.Eventually(t, func() bool { return c.Nodes[0].Stats().Total().MessagesSent > sent },
		delay/2, time.Millisecond, "the message is written")
	require.NoError(t, c.WaitQuiet(ctxFor(t)))
	if time.Since(start) < delay {
		assert.Zero(t, delivered.Load(), "quiet while the message is on its way, not delivered")
	}
	require.Eventually(t, func() bool { return delivered.Load() == 1 }, 3*delay, time.Millisecond,
		"delivered once the delay has passed")
}
