package transport_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestShutdownRunsTheOneWayMessagesItRead: n2 has read two one-way
// messages of an ordered verb, the first in its handler, the second
// queued behind it, when it begins a Shutdown. Shutdown went on to Close
// once its connections had ended, and Close dropped the queued one
// (DroppedInbound[ReasonClosed]): n1 had counted it sent and its
// OnDropped never heard of it, so a rolling restart lost a write a hint
// store could not replay. Shutdown waits for the one-way messages it read
// to be handled, as it waits for the requests.
func TestShutdownRunsTheOneWayMessagesItRead(t *testing.T) {
	inBubble(t, time.Minute, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		var handled []string
		c, n1, n2 := twoPutsRead(t, func(ctx context.Context, m *transport.Message) ([]byte, error) {
			if string(m.Payload) == "first" {
				select {
				case <-release:
				case <-ctx.Done(): // Close ends it
				}
			}
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, string(m.Payload))
			return nil, nil
		})
		defer c.Close()

		shut := make(chan error, 1)
		go func() { shut <- n2.Shutdown(context.Background()) }()
		synctest.Wait()
		close(release)
		require.NoError(t, <-shut)

		mu.Lock()
		defer mu.Unlock()
		in := n2.Stats().Total()
		assert.Equal(t, []string{"first", "second"}, handled,
			"handled by n2 (dropped as closed: %d)", in.DroppedInbound[transport.ReasonClosed])
		assert.Equal(t, uint64(2), n1.Stats().Total().MessagesSent)
	})
}

// TestShutdownCutShortWhileItHandlesWhatItReadSaysSo: n2's Shutdown has
// drained and waits for the one-way messages it read to be handled, the
// first in its handler, the second queued behind it, when a Close cuts
// it short and drops the second (ReasonClosed). Shutdown returned nil,
// as if everything had been handled; a Close that cuts the drain short
// makes it return ErrClosed.
func TestShutdownCutShortWhileItHandlesWhatItReadSaysSo(t *testing.T) {
	inBubble(t, time.Minute, func(t *testing.T) {
		c, _, n2 := twoPutsRead(t, func(ctx context.Context, m *transport.Message) ([]byte, error) {
			if string(m.Payload) == "first" {
				<-ctx.Done() // Close ends it
			}
			return nil, nil
		})
		defer c.Close()

		shut := make(chan error, 1)
		go func() { shut <- n2.Shutdown(context.Background()) }()
		synctest.Wait() // drained, waiting for the handler
		require.NoError(t, n2.Close())
		require.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonClosed], "the second, dropped by the Close")
		assert.ErrorIs(t, <-shut, transport.ErrClosed, "Shutdown cut short by a Close")
	})
}

// twoPutsRead starts two nodes, in a synctest bubble, whose n2 handles an
// ordered verb with handle, and has n1 send it "first" and "second": it
// returns once n2 has read both, the first in its handler (which handle
// holds there) and the second queued behind it.
func twoPutsRead(t *testing.T, handle transport.HandlerFunc) (c *transporttest.Cluster, n1, n2 *transport.Transport) {
	t.Helper()
	const verbPut transport.Verb = 245
	c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Telemetry.DisableSocketMeasurement = true
	}})
	require.NoError(t, err)
	n1, n2 = c.Nodes[0], c.Nodes[1]
	n2.Handle(verbPut, handle)
	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, []byte("first")))
	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, []byte("second")))
	synctest.Wait() // both read: the first in its handler, the second queued
	return c, n1, n2
}
