package transport_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/transport"
)

// TestStreamOpenOnABrokenSessionLeavesOlderStreamsTheirBytes: a handler
// writes its bytes and returns, and every byte and its stream's end
// arrived at the opener, which has not read them yet; then the session's
// socket can no longer be written (its write side shut here, as a
// connection that broke under a write finds it), and the opener's next
// OpenStream finds the session broken. That open closed the session at
// once, and smux's Session.Close throws away the bytes its streams hold
// unread: the older stream read cut short although its peer had ended it
// cleanly and all of it had arrived. The session is now closed as when
// its connection ends (closeWhenBroken): after its read-aheads took what
// smux holds.
func TestStreamOpenOnABrokenSessionLeavesOlderStreamsTheirBytes(t *testing.T) {
	var mu sync.Mutex
	var conns []*net.TCPConn // n1's dialled connections and n2's accepted ones
	keep := func(conn net.Conn) {
		if tc, ok := conn.(*net.TCPConn); ok {
			mu.Lock()
			conns = append(conns, tc)
			mu.Unlock()
		}
	}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		switch i {
		case 0:
			cfg.Dialer = dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
				conn, err := (&net.Dialer{}).DialContext(ctx, network, address)
				keep(conn)
				return conn, err
			})
		case 1:
			cfg.Listen = func(network, address string) (net.Listener, error) {
				l, err := net.Listen(network, address)
				return keptListener{l, keep}, err
			}
		}
	})
	want := makePayload(1, 1, 400<<10) // more than the read-ahead holds, within what smux takes too
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = s.Write(want)
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	// The handler returned and its stream's end went out (its place is let
	// go once smux wrote its FIN); once n2's socket has nothing left unacked
	// and n1's nothing unread, smux on n1 holds the rest of the stream.
	waitFor(t, 10*time.Second, "the handler's stream ends", func() bool { return streamsInFrom(c.Nodes[1], c.ID(0)) == 0 })
	var dialled, accepted *net.TCPConn
	mu.Lock()
	for _, tc := range conns {
		switch {
		case tc.LocalAddr().String() == s.LocalAddr().String():
			dialled = tc
		case tc.RemoteAddr().String() == s.LocalAddr().String():
			accepted = tc
		}
	}
	mu.Unlock()
	require.NotNil(t, dialled, "the stream session's connection, dialled")
	require.NotNil(t, accepted, "the stream session's connection, accepted")
	sent, err := sockstat.NewProbe(accepted)
	require.NoError(t, err)
	received, err := sockstat.NewProbe(dialled)
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "smux on n1 read all n2 sent", func() bool {
		out, err1 := sent.SendQueue()
		in, err2 := received.RecvQueue()
		return err1 == nil && err2 == nil && out == 0 && in == 0
	})

	require.NoError(t, dialled.CloseWrite())
	_, err = c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	t.Logf("open on the broken session: %v", err)

	got, err := io.ReadAll(s)
	assert.NoError(t, err, "the peer ended the stream cleanly, and all of it arrived")
	assert.Equal(t, len(want), len(got))
	assert.True(t, bytes.Equal(want, got), "bytes differ")
}

// keptListener hands each connection it accepts to keep.
type keptListener struct {
	net.Listener
	keep func(net.Conn)
}

func (l keptListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.keep(conn)
	}
	return conn, err
}
