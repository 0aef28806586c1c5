package transport_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestStreamEndedBeforeItsPeerClosedReadsWhole (found in review): a
// handler writes its bytes, returns, and its stream's end (the end marker,
// smux's FIN) goes out; then its node closes. Every byte and the end
// arrived at the opener, which had not read them yet: some in its
// read-ahead's buffer, the rest in smux's. smux v1.5.58's Session.Close
// throws away the bytes its streams hold unread (v1.5.56 kept them
// readable), and the opener's session was closed as its socket ended
// (closeWhenBroken), so the opener read the stream cut short
// (io.ErrUnexpectedEOF) although its peer had ended it cleanly and every
// byte had arrived.
func TestStreamEndedBeforeItsPeerClosedReadsWhole(t *testing.T) {
	c := newCluster(t, 2, nil)
	want := makePayload(1, 1, 400<<10) // more than the read-ahead holds, within what smux takes too
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = s.Write(want)
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	// The handler returned and its stream's close went out: its place is
	// let go once smux wrote its FIN.
	waitFor(t, 10*time.Second, "the handler's stream ends", func() bool { return streamsInFrom(c.Nodes[1], c.ID(0)) == 0 })
	require.NoError(t, c.Nodes[1].Close())
	waitFor(t, 10*time.Second, "the opener's session closes with its connection", func() bool {
		for _, p := range c.Nodes[0].Health().Peers {
			if p.Peer == c.ID(1) {
				return !p.StreamSession
			}
		}
		return false
	})
	got, err := io.ReadAll(s)
	assert.NoError(t, err, "the peer ended the stream cleanly, and all of it arrived")
	assert.Equal(t, len(want), len(got))
	assert.True(t, bytes.Equal(want, got), "bytes differ")
}

// TestStreamEndedBeforeItsOpenerClosedReadsWhole is the same from the
// other side: the opener writes its bytes, closes its stream, and then
// its node closes, while the handler has read none of them. The accept
// loop closed the session as its connection ended (serveStreams), and
// the handler read the stream cut short.
func TestStreamEndedBeforeItsOpenerClosedReadsWhole(t *testing.T) {
	c := newCluster(t, 2, nil)
	want := makePayload(0, 1, 400<<10)
	type result struct {
		got []byte
		err error
	}
	results := make(chan result, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		// Not a byte read until the read-ahead has read the stream's end:
		// the opener's connection ended.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if _, _, ended := transport.StreamReadAheadGrowth(s); ended {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond): // polls a condition
			}
		}
		got, err := io.ReadAll(s)
		results <- result{got, err}
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	n, err := s.Write(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	require.NoError(t, s.Close())
	waitFor(t, 10*time.Second, "the opener's stream ends", func() bool { return streamsOut(t, c.Nodes[0], c.ID(1)) == 0 })
	require.NoError(t, c.Nodes[0].Close())
	var r result
	select {
	case r = <-results:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler did not finish")
	}
	assert.NoError(t, r.err, "the opener ended the stream cleanly, and all of it arrived")
	assert.Equal(t, len(want), len(r.got))
	assert.True(t, bytes.Equal(want, r.got), "bytes differ")
}
