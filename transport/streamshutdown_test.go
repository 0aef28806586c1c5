package transport_test

import (
	"context"
	"io"
	"net"
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

// TestAStreamWhoseHandlerEndsForTheCloseIsCutShort: n2's Close ends its
// stream handlers' contexts, and a handler that stops for it, its
// stream's data unfinished, and closes its stream wrote the stream's end
// marker into the session, which Close had not closed yet: the opener
// read a clean io.EOF after a stream cut short. (n2's listener, closed
// between the two, holds its close until the handler's is done, so that
// it is seen every time.) Once its transport's Close has begun, a stream
// ends without its end marker: the opener reads it cut short.
func TestAStreamWhoseHandlerEndsForTheCloseIsCutShort(t *testing.T) {
	handlerClosed := make(chan struct{})
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i != 1 {
			return
		}
		cfg.Listen = func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			return &heldCloseListener{Listener: ln, until: handlerClosed}, err
		}
	})
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		defer close(handlerClosed)
		_, _ = s.Write([]byte("the first half"))
		<-ctx.Done() // the close: the second half never comes
		_ = s.Close()
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	first := make([]byte, len("the first half"))
	_, err = io.ReadFull(s, first)
	require.NoError(t, err)

	require.NoError(t, c.Nodes[1].Close())
	require.NoError(t, s.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = s.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "a stream whose handler the close cut off")
}

// heldCloseListener's Close waits until until is closed.
type heldCloseListener struct {
	net.Listener
	until <-chan struct{}
}

func (l *heldCloseListener) Close() error {
	<-l.until
	return l.Listener.Close()
}
