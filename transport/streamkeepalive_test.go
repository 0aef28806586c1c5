package transport_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// streamKeepalive is the Timeouts.Keepalive of the stream keep-alive
// tests: the least Validate takes.
const streamKeepalive = 2 * time.Second

// startProxiedStreams starts two proxied nodes with streamKeepalive,
// whose n2 serves verbEcho streams with serve, and opens one from n1.
func startProxiedStreams(t *testing.T, serve func(s *transport.Stream)) (*transporttest.Cluster, *transport.Stream) {
	c := transporttest.New(t, 2, transporttest.Options{Proxied: true, Tweak: func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = streamKeepalive
	}})
	c.Nodes[1].HandleStream(verbEcho, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) { serve(s) }))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

// echoOnce writes a byte to s and reads it back.
func echoOnce(s *transport.Stream) error {
	if _, err := s.Write([]byte("x")); err != nil {
		return err
	}
	var b [1]byte
	_, err := io.ReadFull(s, b[:])
	return err
}

// TestStreamToAFrozenPeerEndsWithinKeepalive: a frozen peer (or a
// partition) silences a stream session, and both ends find it dead
// once it is silent for Timeouts.Keepalive (two keep-alive intervals at
// least), as they
// find the lanes' connections: a Read waiting on either end fails cut
// short, and each side's count of streams with the other goes back to
// zero once the stream is closed. The session kept smux's own
// keep-alive, whatever Keepalive said: it closes a session only at a
// check every 30 s that finds nothing heard since the one before, so a
// stream to a peer that froze waited 30 to 60 s.
func TestStreamToAFrozenPeerEndsWithinKeepalive(t *testing.T) {
	handlerRead := make(chan error, 1)
	c, s := startProxiedStreams(t, func(s *transport.Stream) {
		var b [1]byte
		_, err := io.ReadFull(s, b[:])
		if err == nil {
			_, err = s.Write(b[:])
		}
		if err == nil {
			_, err = s.Read(b[:]) // the opener sends nothing more
		}
		handlerRead <- err
	})
	require.NoError(t, echoOnce(s))

	require.Positive(t, c.Proxies[1].Freeze()+c.Proxies[0].Freeze())
	start := time.Now()
	openerRead := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := s.Read(b[:])
		openerRead <- err
	}()
	// Found dead at the second check after the last bytes heard; the
	// checks are Keepalive apart, and two keep-alive intervals (1 s) at
	// least: within twice Keepalive, or 4 s when Keepalive is shorter.
	// The wait allowed beyond that is slack for a loaded machine, and
	// still well short of smux's own 30 s.
	bound := max(2*streamKeepalive, 4*time.Second)
	for _, w := range []struct {
		side  string
		ended chan error
	}{{"the opener's", openerRead}, {"the handler's", handlerRead}} {
		select {
		case err := <-w.ended:
			t.Logf("%s Read ended %v after the freeze: %v", w.side, time.Since(start), err)
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "%s Read: the stream was cut short", w.side)
		case <-time.After(bound + 10*time.Second):
			t.Fatalf("%s Read still waits %v after the freeze, with Keepalive at %v", w.side, time.Since(start), streamKeepalive)
		}
	}
	require.NoError(t, s.Close())
	for _, n := range c.Nodes {
		waitFor(t, 10*time.Second, "the stream's places given back", func() bool {
			ph := n.Health().Peers[0]
			return ph.StreamsOut == 0 && ph.StreamsIn == 0
		})
	}
}

// TestIdleStreamOutlivesKeepalive: a stream that carries nothing for
// three times Timeouts.Keepalive is not taken for dead: its session
// speaks while its streams do not, and the stream carries bytes after.
func TestIdleStreamOutlivesKeepalive(t *testing.T) {
	_, s := startProxiedStreams(t, func(s *transport.Stream) { _, _ = io.Copy(s, s) })
	require.NoError(t, echoOnce(s))
	time.Sleep(3 * streamKeepalive) // nothing is to happen meanwhile
	require.NoError(t, echoOnce(s), "the idle stream still carries bytes")
}
