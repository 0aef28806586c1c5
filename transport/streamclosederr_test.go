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
	"github.com/internode/internode/transport/transporttest"
)

// TestStreamOfAClosedTransportFailsAsClosed: "a closed transport's errors
// satisfy errors.Is(err, net.ErrClosed)" (see the package's Errors). A
// stream on a connection of its own did, its socket closed; one in a
// session failed with the error of a session that ended under it
// (io.ErrUnexpectedEOF) alone, on either side, so that a caller could not
// tell its own node's Close from a peer that failed. Its Reads and Writes
// now say both.
func TestStreamOfAClosedTransportFailsAsClosed(t *testing.T) {
	for _, mode := range streamModes {
		for _, closing := range []string{"acceptor", "opener"} {
			t.Run(mode.name+"/"+closing, func(t *testing.T) {
				c := newCluster(t, 2, nil)
				handlerErrs, running := make(chan error, 2), make(chan struct{})
				c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
					close(running)
					var b [1]byte
					_, err := s.Read(b[:]) // until a transport closes
					handlerErrs <- err
					_, err = s.Write(b[:])
					handlerErrs <- err
				}))
				s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, mode.opts...)
				require.NoError(t, err)
				defer s.Close()
				// Not StreamsIn, which counts the stream before its
				// acceptance is written: a Close then ends it unserved.
				within(t, running, 5*time.Second, "the handler runs")
				if closing == "acceptor" {
					require.NoError(t, c.Nodes[1].Close())
					assert.ErrorIs(t, within(t, handlerErrs, 5*time.Second, "the handler's Read"), net.ErrClosed, "the handler's Read as its transport closed")
					assert.ErrorIs(t, within(t, handlerErrs, 5*time.Second, "the handler's Write"), net.ErrClosed, "the handler's Write after its transport closed")
					return
				}
				require.NoError(t, c.Nodes[0].Close())
				var b [1]byte
				_, err = s.Read(b[:])
				assert.ErrorIs(t, err, net.ErrClosed, "the opener's Read after its transport closed")
				_, err = s.Write(b[:])
				assert.ErrorIs(t, err, net.ErrClosed, "the opener's Write after its transport closed")
			})
		}
	}
}

// TestStreamCloseWriteSaysWhyItFailed: CloseWrite, which writes the
// stream's end, fails for the reasons Write does and says so as Write
// does: with ErrPeerLeft once the peer left the membership, and with
// ErrClosed once this node's transport closed. It returned the
// connection's error alone (a session cut short, a closed socket).
func TestStreamCloseWriteSaysWhyItFailed(t *testing.T) {
	for _, mode := range streamModes {
		for _, end := range []struct {
			name string
			do   func(c *transporttest.Cluster)
			want error
		}{
			{"peer left", func(c *transporttest.Cluster) { c.Members.Remove(c.ID(1)) }, transport.ErrPeerLeft},
			{"transport closed", func(c *transporttest.Cluster) { _ = c.Nodes[0].Close() }, net.ErrClosed},
		} {
			t.Run(mode.name+"/"+end.name, func(t *testing.T) {
				c := newCluster(t, 2, nil)
				c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
					_, _ = io.Copy(io.Discard, s)
				}))
				s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, mode.opts...)
				require.NoError(t, err)
				defer s.Close()
				end.do(c)
				_, err = s.Write([]byte("x"))
				require.ErrorIs(t, err, end.want, "Write")
				assert.ErrorIs(t, s.CloseWrite(), end.want, "CloseWrite")
			})
		}
	}
}
