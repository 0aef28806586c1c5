package transport_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestAStreamOpenedOnASessionOfANodeShuttingDownIsRefused: a node whose
// Shutdown has begun refuses what would outlive it: requests ("shutting
// down", ErrOverloaded), file transfers and stream connections (their
// handshakes, ErrOverloaded). A stream opened in the stream session
// already open was accepted instead, its handler started, and the
// Shutdown's close then cut it off (Shutdown does not wait for streams):
// its opener began a transfer on a node about to go, rather than being
// told at once to try another. It is refused ErrOverloaded too.
func TestAStreamOpenedOnASessionOfANodeShuttingDownIsRefused(t *testing.T) {
	c := newCluster(t, 2, nil)
	started := make(chan struct{}, 4)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		started <- struct{}{}
		_, _ = io.Copy(s, s)
		_ = s.CloseWrite()
	}))
	// The session, open before the Shutdown.
	first, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer first.Close()
	<-started

	finish := shutdownHeldOpen(t, c)

	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	if s != nil {
		s.Close()
	}
	assert.ErrorIs(t, err, transport.ErrOverloaded, "a stream opened in the session of a node shutting down")
	select {
	case <-started:
		t.Error("its handler started on a node shutting down")
	default:
	}

	finish()
}
