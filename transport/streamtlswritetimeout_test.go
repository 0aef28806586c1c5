package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestOwnConnectionWriteAfterATimeout: a stream on a connection of its
// own whose peer stops reading until its write deadline passes fails its
// Write with os.ErrDeadlineExceeded; the peer then reads again. In plain text the
// next Write goes on from where the timed-out one stopped, as on TCP, and
// the peer reads every byte once, in order. Over TLS it cannot: the
// timed-out Write may have left a TLS record half written, and crypto/tls
// fails every later write of the connection with the timeout's error.
// Stream.Write's doc said a later Write goes on there too; the next Write
// failed at once with the same timeout, which a caller that retries
// timeouts, as the doc told it to, retried for ever. It now fails with an
// error that says the stream's writing ended (io.ErrClosedPipe, as a
// session stream's after a failed Write), not a timeout; CloseWrite
// fails too; the peer reads the stream cut short, never as a clean end;
// and Close gives back the stream's places on both sides.
//
// The deadline is the caller's (SetWriteDeadline), which a Write meets as
// it does Timeouts.Write's: Timeouts.Write is also the sockets'
// TCP_USER_TIMEOUT, and set as short, a peer reading again that a loaded
// machine kept from reading for about that long timed its chunk out, or
// its kernel reset the connection, under the Write that was to go on.
func TestOwnConnectionWriteAfterATimeout(t *testing.T) {
	const write = 500 * time.Millisecond
	for _, overTLS := range []bool{false, true} {
		name := "plain text"
		if overTLS {
			name = "TLS"
		}
		t.Run(name, func(t *testing.T) {
			var opts transporttest.Options
			if overTLS {
				ca, err := transporttest.NewCA("test")
				require.NoError(t, err)
				opts.CA = ca
			}
			c := transporttest.New(t, 2, opts)
			read := newGate()
			t.Cleanup(read.open)
			type result struct {
				data []byte
				err  error
			}
			got := make(chan result, 1)
			c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
				if read.wait(ctx) != nil {
					return
				}
				b, err := io.ReadAll(s)
				got <- result{b, err}
			}))
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, transport.OwnConnection())
			require.NoError(t, err)
			defer s.Close()
			data := make([]byte, 16<<20) // more than the sockets hold
			for i := range data {
				data[i] = byte(i * 7)
			}
			require.NoError(t, s.SetWriteDeadline(time.Now().Add(write)))
			n, err := s.Write(data)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the peer reads nothing until the deadline")
			require.Less(t, n, len(data))
			require.NoError(t, s.SetWriteDeadline(time.Time{}))
			read.open()

			type written struct {
				n   int
				err error
			}
			next := make(chan written, 1)
			go func() {
				m, err := s.Write(data[n:])
				next <- written{m, err}
			}()
			var w written
			select {
			case w = <-next:
			case <-time.After(20 * time.Second):
				s.Close() // ends the Write
				<-next
				t.Fatal("the Write after the timed-out one still blocked after 20 s")
			}

			if !overTLS {
				require.NoError(t, w.err, "in plain text the next Write goes on")
				require.Equal(t, len(data)-n, w.n)
				require.NoError(t, s.CloseWrite())
				r := <-got
				require.NoError(t, r.err)
				assert.Equal(t, len(data), len(r.data), "every byte, once")
				assert.True(t, bytes.Equal(data, r.data), "in order")
				return
			}

			t.Logf("the Write after the timed-out one: %d bytes, %v", w.n, w.err)
			assert.Zero(t, w.n)
			assert.ErrorIs(t, w.err, io.ErrClosedPipe, "the stream's writing ended")
			assert.False(t, errors.Is(w.err, os.ErrDeadlineExceeded),
				"not a timeout, which a caller would retry: %v", w.err)
			assert.ErrorContains(t, w.err, "TLS")
			_, err = s.Write([]byte{1})
			assert.ErrorIs(t, err, io.ErrClosedPipe, "and every later one")
			assert.ErrorIs(t, s.CloseWrite(), io.ErrClosedPipe, "no end marker")
			require.NoError(t, s.Close())
			var r result
			select {
			case r = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("the peer's Read did not end within 10 s of Close")
			}
			t.Logf("the peer read %d bytes, then %v", len(r.data), r.err)
			assert.Error(t, r.err, "the peer reads the stream cut short, not a clean end")
			assert.True(t, bytes.HasPrefix(data, r.data), "what it read was written, once, in order")
			waitFor(t, 5*time.Second, "the stream's places given back", func() bool {
				return streamsOut(t, c.Nodes[0], c.ID(1)) == 0 && streamsInFrom(c.Nodes[1], c.ID(0)) == 0
			})
		})
	}
}

// streamsInFrom returns how many streams peer has open to n.
func streamsInFrom(n *transport.Transport, peer cluster.NodeID) int32 {
	h := n.Health()
	p, _ := h.Peer(peer)
	return p.StreamsIn
}
