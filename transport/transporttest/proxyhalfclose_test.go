package transporttest

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestProxyForwardsAHalfClose: a client that sends its request and
// half-closes (TCP FIN), then reads the answer, gets the answer through a
// Proxy as it does without one. The proxy passes the FIN on and keeps
// forwarding the other way; it resets nothing.
func TestProxyForwardsAHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := io.ReadAll(conn) // until the client's FIN
		if err != nil {
			served <- err
			return
		}
		_, err = conn.Write(append([]byte("answer to "), req...))
		served <- err
	}()

	p, err := NewProxy(ln.Addr().String())
	require.NoError(t, err)
	defer p.Close()
	conn, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Write([]byte("the request"))
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	answer, err := io.ReadAll(conn)
	assert.NoError(t, err, "the answer ends with the server's FIN, not a reset")
	assert.Equal(t, "answer to the request", string(answer))
	assert.NoError(t, <-served, "the server reads the request to its end and answers")
}

// TestProxiedStreamOnItsOwnConnectionKeepsItsEnd: on a Proxied cluster, a
// stream on a connection of its own whose handler writes 4 MiB and closes
// delivers all 4 MiB. The stream's Close half-closes its socket so that
// the end of what it wrote is not lost; a proxy that turns that FIN into
// a reset discards what it still had to forward.
func TestProxiedStreamOnItsOwnConnectionKeepsItsEnd(t *testing.T) {
	c := New(t, 2, Options{Proxied: true})
	const verbAnswer transport.Verb = 7
	const size = 4 << 20
	answer := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	c.Nodes[1].HandleStream(verbAnswer, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.ReadAll(s)
		_, _ = s.Write(answer)
		_ = s.Close()
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for round := range 10 {
		s, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbAnswer, transport.OwnConnection())
		require.NoError(t, err)
		_, err = s.Write([]byte("ask"))
		require.NoError(t, err)
		require.NoError(t, s.CloseWrite())
		got, err := io.ReadAll(s)
		s.Close()
		require.NoError(t, err, "round %d: the stream ended after %d of %d bytes", round, len(got), size)
		require.Equal(t, size, len(got), "round %d", round)
	}
}
