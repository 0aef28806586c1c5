package transport_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestShutdownReadsWhatPeersWrote: n1 has written one-way messages that
// wait, unread, in n2's socket (n2's reader runs an Inline handler that
// is stalled) when n2 begins a Shutdown. Shutdown drained what n2 had to
// send and closed the connection with them unread: n1 counted them sent,
// n2 counted them nowhere, and n1's hint store, fed by OnDropped, never
// heard of them — a graceful restart lost writes silently. Shutdown
// closes its side of the connection and reads on until n1, seeing that,
// has closed its own: every message n1 wrote is received by n2 or
// counted dropped there. Over TCP (a FIN) and TLS (close_notify).
func TestShutdownReadsWhatPeersWrote(t *testing.T) {
	overTCPAndTLS(t, testShutdownReadsWhatPeersWrote)
}

// overTCPAndTLS runs test over plain TCP, and over TLS with tweak.
func overTCPAndTLS(t *testing.T, test func(t *testing.T, tweak func(*transport.Config))) {
	t.Run("tcp", func(t *testing.T) { test(t, func(*transport.Config) {}) })
	t.Run("tls", func(t *testing.T) {
		ca := newCA(t, "test")
		test(t, func(cfg *transport.Config) { cfg.Security.TLS = tlsFor(t, ca, cfg.NodeID) })
	})
}

func testShutdownReadsWhatPeersWrote(t *testing.T, tweak func(*transport.Config)) {
	const verbPut transport.Verb = 243
	const behind = 99
	held := newGate()
	defer held.open()
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbPut: routing.Small}
		tweak(cfg)
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	entered := make(chan struct{}, behind+1)
	n2.Handle(verbPut, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		entered <- struct{}{}
		return nil, held.wait(ctx)
	}), transport.Inline())

	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, make([]byte, 1<<10)))
	within(t, entered, 10*time.Second, "the first message's handler")
	for range behind {
		require.NoError(t, n1.Send(context.Background(), c.ID(1), verbPut, make([]byte, 1<<10)))
	}
	waitFor(t, 10*time.Second, "every message written", func() bool {
		return laneStats(t, n1, string(c.ID(1)), routing.Small).MessagesSent == behind+1
	})

	shut := make(chan error, 1)
	go func() { shut <- n2.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	// Once n1 has seen the connection end, the handler goes on.
	waitFor(t, 10*time.Second, "n1 seeing the connection end", func() bool {
		return !laneStats(t, n1, string(c.ID(1)), routing.Small).Connected
	})
	held.open()
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))

	in := n2.Stats().Total()
	var dropped uint64
	for _, d := range in.DroppedInbound {
		dropped += d
	}
	assert.Equal(t, uint64(behind+1), in.MessagesReceived+dropped,
		"of %d messages written: %d received, %d dropped by n2", behind+1, in.MessagesReceived, dropped)
}

// TestShutdownAmidTraffic: n1 sends one-way messages, small and large,
// throughout n2's Shutdown. What n1 counted sent, n2 received or counted
// dropped: none was left unread in n2's socket when it closed (before
// Shutdown read on, a few thousand in some runs). n2 may count more than
// n1 sent: a write that n1's close of the connection cut short fails
// there as reset, its peer "may or may not have" it.
func TestShutdownAmidTraffic(t *testing.T) { overTCPAndTLS(t, testShutdownAmidTraffic) }

func testShutdownAmidTraffic(t *testing.T, tweak func(*transport.Config)) {
	const verbPut transport.Verb = 244
	for round := range 4 {
		c := newCluster(t, 2, func(_ int, cfg *transport.Config) { tweak(cfg) })
		n1, n2 := c.Nodes[0], c.Nodes[1]
		n2.Handle(verbPut, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
			return nil, nil
		}))
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			small, large := make([]byte, 100), make([]byte, 200<<10)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := small
				if i%64 == 0 {
					payload = large
				}
				_ = n1.Send(context.Background(), c.ID(1), verbPut, payload)
			}
		}()
		waitFor(t, 10*time.Second, "traffic", func() bool { return n2.Stats().Total().MessagesReceived > 1000 })
		require.NoError(t, n2.Shutdown(ctxTimeout(t, 10*time.Second)))
		close(stop)
		<-stopped
		sent := n1.Stats().Total().MessagesSent
		in := n2.Stats().Total()
		var dropped uint64
		for _, d := range in.DroppedInbound {
			dropped += d
		}
		assert.GreaterOrEqual(t, in.MessagesReceived+dropped, sent,
			"round %d: of %d messages n1 sent, n2 received %d and dropped %d", round, sent, in.MessagesReceived, dropped)
		c.Close()
	}
}

// TestShutdownFinishCountsNoBadInputForACutFrame: the peer of a
// connection whose back channel a drained Shutdown has closed stops
// writing and closes the connection, as wire/doc.go asks, where it is:
// a frame it was writing is cut short. That is the end Shutdown asked
// for, not bad input: nothing is counted malformed or logged so (before,
// one connection in two of a Shutdown amid traffic was).
func TestShutdownFinishCountsNoBadInputForACutFrame(t *testing.T) {
	const verbPut transport.Verb = 245
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) { cfg.Security.AcceptUnknownPeers = true })
	node := c.Nodes[0]
	handled := make(chan struct{}, 1)
	node.Handle(verbPut, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		handled <- struct{}{}
		return nil, nil
	}))
	peer := dialAs(node.Addr().String(), "peer", routing.Small)
	require.NotNil(t, peer)
	defer peer.Close()
	require.NoError(t, peer.SetDeadline(time.Now().Add(10*time.Second)))
	msg := wire.AppendHeader(nil, &wire.Header{Verb: uint32(verbPut), PayloadLength: 1 << 10})
	msg = append(msg, make([]byte, 1<<10)...)
	frame := append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...)
	_, err := peer.Write(frame)
	require.NoError(t, err)
	within(t, handled, 10*time.Second, "the first message") // the connection is served
	_, err = peer.Write(frame[:len(frame)/2])
	require.NoError(t, err)

	shut := make(chan error, 1)
	go func() { shut <- node.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	_, err = io.Copy(io.Discard, peer)
	require.NoError(t, err, "the back channel ends")
	peer.Close() // the rest of the frame unwritten
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))
	s := node.Stats()
	assert.Zero(t, s.InboundMalformed, "bad input counted: %v", s.BadInput)
}

// TestShutdownReadsAConnectionAnsweredAsItBegan: a connection whose
// handshake's reply went out as Shutdown began, and whose peer wrote a
// one-way message once it read it, is read as the others are, not
// closed unread because it was not yet among the served connections
// when Shutdown, drained, looked for those to read on: the message is
// received.
func TestShutdownReadsAConnectionAnsweredAsItBegan(t *testing.T) {
	const verbPut transport.Verb = 246
	cleared, closed, clear := make(chan struct{}), make(chan struct{}), newGate()
	defer clear.open()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Listen = func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			return &clearGatedListener{Listener: ln, clearing: cleared, closed: closed, clear: clear}, err
		}
	})
	node := c.Nodes[0]
	node.Handle(verbPut, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return nil, nil }))
	peer := rawConn(t, node)
	reply := handshake(t, peer, validHello(routing.Small))
	require.Equal(t, wire.Accepted, reply.Reason)
	msg := wire.AppendHeader(nil, &wire.Header{Verb: uint32(verbPut), PayloadLength: 100})
	msg = append(msg, make([]byte, 100)...)
	_, err := peer.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...))
	require.NoError(t, err)
	// The node is between its reply and serving the connection.
	within(t, cleared, 10*time.Second, "the handshake's end")

	shut := make(chan error, 1)
	go func() { shut <- node.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	// A Shutdown that does not wait for the connection closes it at
	// once; one that does waits for it for longer than this.
	select {
	case <-closed:
	case <-time.After(time.Second):
	}
	clear.open()
	_, _ = io.Copy(io.Discard, peer) // to the end of the back channel
	peer.Close()
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))
	in := node.Stats().Total()
	var dropped uint64
	for _, d := range in.DroppedInbound {
		dropped += d
	}
	assert.Equal(t, uint64(1), in.MessagesReceived+dropped,
		"of 1 message written: %d received, %d dropped", in.MessagesReceived, dropped)
}

// clearGatedListener is a listener whose first connection's clearing of
// its deadlines, at the end of its handshake, waits for clear once it
// has said so (clearing); its Close says so (closed).
type clearGatedListener struct {
	net.Listener
	accepted bool
	clearing chan struct{}
	closed   chan struct{}
	clear    *gate
}

func (l *clearGatedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil || l.accepted {
		return conn, err
	}
	l.accepted = true // one accept loop
	return &clearGatedConn{TCPConn: conn.(*net.TCPConn), l: l}, nil
}

type clearGatedConn struct {
	*net.TCPConn
	l                *clearGatedListener
	clearOnce, close sync.Once
}

func (c *clearGatedConn) SetDeadline(d time.Time) error {
	if d.IsZero() {
		c.clearOnce.Do(func() {
			close(c.l.clearing)
			_ = c.l.clear.wait(context.Background())
		})
	}
	return c.TCPConn.SetDeadline(d)
}

func (c *clearGatedConn) Close() error {
	c.close.Do(func() { close(c.l.closed) })
	return c.TCPConn.Close()
}

// TestShutdownClosesTheListenerOnce: the transport owns the listener
// Config.Listen returns and closes it, once: the second Close of an
// io.Closer is undefined, and a listener of the application's may panic
// at it (closing a channel twice). A drained Shutdown, which stops
// listening before it reads on, and the Close it ends with, close it once
// between them, however many Shutdowns there are.
func TestShutdownClosesTheListenerOnce(t *testing.T) {
	var closes atomic.Int32
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Listen = func(network, addr string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			return &countingCloseListener{Listener: ln, closes: &closes}, err
		}
	})
	node := c.Nodes[0]
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- node.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	}
	require.NoError(t, within(t, done, 10*time.Second, "Shutdown"))
	require.NoError(t, within(t, done, 10*time.Second, "Shutdown"))
	require.NoError(t, node.Close())
	assert.Equal(t, int32(1), closes.Load(), "listener closed %d times", closes.Load())
}

type countingCloseListener struct {
	net.Listener
	closes *atomic.Int32
}

func (l *countingCloseListener) Close() error {
	l.closes.Add(1)
	return l.Listener.Close()
}
