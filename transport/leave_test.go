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

// A peer that leaves the membership ends what this node has under way to
// it — a file transfer, a stream — with ErrPeerLeft at once, as it ends
// the requests waiting for it: the caller (a repair that streams to a
// replica, say) hears why and plans again. These tests' receivers stop
// taking or answering, so before the peer left such a call waited for
// Timeouts.Write (30 s by default) or for ever; each test's own bound, a
// context or a deadline of 10 s, would then end it with another error.
const leaveBound = 10 * time.Second

// TestLeaveEndsASendFileUnderWay: the receiver took 1 MiB of a 64 MiB
// transfer and stopped reading; the sender waits for its socket. Its
// peer leaving fails the transfer with ErrPeerLeft.
func TestLeaveEndsASendFileUnderWay(t *testing.T) {
	c := newCluster(t, 2, nil)
	took := make(chan struct{})
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		_, _ = io.CopyN(io.Discard, ft.Reader(), 1<<20)
		close(took)
		<-ctx.Done()
		return ctx.Err()
	}))
	src, data := tempFile(t, 64<<20) // far more than the sockets' buffers hold
	ctx, cancel := context.WithTimeout(context.Background(), leaveBound)
	defer cancel()
	sent := sendFileAsync(ctx, c, src, len(data))
	<-took
	c.Members.Remove(c.ID(1))
	err := <-sent
	require.ErrorIs(t, err, transport.ErrPeerLeft)
	assert.NoError(t, ctx.Err(), "SendFile ended with its context, not with the peer's leaving")
	assert.Equal(t, uint64(1), c.Nodes[0].Stats().FileSendFailures)
}

// TestLeaveEndsAStreamUnderWay: the stream's handler never writes, so
// the opener's Read waits. Its peer leaving ends the Read, and every
// Write after it, with ErrPeerLeft: for a stream in the peer's session
// (which the leaving closes, and whose Read ended with an error that did
// not say why) and for one on a connection of its own (which went on).
func TestLeaveEndsAStreamUnderWay(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := "session"
		var opts []transport.StreamOption
		if own {
			name = "own connection"
			opts = append(opts, transport.OwnConnection())
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
				_, _ = io.Copy(io.Discard, s) // reads, never writes
			}))
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, opts...)
			require.NoError(t, err)
			defer s.Close()
			_, err = s.Write([]byte("repair range 1"))
			require.NoError(t, err)
			require.NoError(t, s.SetReadDeadline(time.Now().Add(leaveBound)))
			read := make(chan error, 1)
			go func() {
				_, err := s.Read(make([]byte, 16))
				read <- err
			}()
			c.Members.Remove(c.ID(1))
			err = <-read
			require.ErrorIs(t, err, transport.ErrPeerLeft)
			assert.False(t, isTimeout(err), "the Read ended at its deadline, not with the peer's leaving: %v", err)
			_, err = s.Write([]byte("repair range 2"))
			assert.ErrorIs(t, err, transport.ErrPeerLeft)
		})
	}
}
