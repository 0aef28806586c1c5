package transport_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// beginLarge writes a FrameLargeBegin of a one-way message of verb with
// length bytes of payload on stream, as a peer's large lane does.
func beginLarge(t *testing.T, conn net.Conn, stream uint32, verb transport.Verb, length int) {
	t.Helper()
	h := wire.AppendHeader(nil, &wire.Header{ID: uint64(stream), Verb: uint32(verb), PayloadLength: uint32(length)})
	_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, stream, h), h...))
	require.NoError(t, err)
}

// TestLargeResponseIsNotRefusedWhileAnotherPeersMessageWaits: a large
// response is taken within its peer's inbound limit while that has room
// (doc.go: it is refused only "when neither has room"), and "no one's
// requests hold up anyone's responses". The response reader took its room
// with TryTake, which refuses while any waiter is blocked at the peer's
// or the node's account: one peer's large message waiting for room made
// another peer's large response fail with ErrOverloaded, with half the
// node's inbound room free.
func TestLargeResponseIsNotRefusedWhileAnotherPeersMessageWaits(t *testing.T) {
	const verbBig transport.Verb = 120
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 30 * time.Second // the raw peers below do not ping
		cfg.Memory.MaxMessageSize = 12 << 20
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 16 << 20, Node: 16 << 20}
	})
	requester, responder := c.Nodes[0], c.Nodes[1]
	responder.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return make([]byte, 2<<20), nil // a 2 MiB answer: above PerConnection, within PerPeer
	}))

	// x1 holds 8 MiB of the requester's 16 MiB: a message granted room
	// whose parts never come.
	for _, id := range []cluster.NodeID{"x1", "x2"} {
		c.Members.Add(cluster.Member{ID: id, Addr: "127.0.0.1:1"})
	}
	x1 := dialAs(requester.Addr().String(), "x1", routing.Large)
	require.NotNil(t, x1)
	defer x1.Close()
	beginLarge(t, x1, 1, verbBig, 8<<20)
	require.True(t, awaitBack(x1, wire.FrameGrant, 1), "x1's message granted")
	// x2's 12 MiB message waits for room at the node's account.
	x2 := dialAs(requester.Addr().String(), "x2", routing.Large)
	require.NotNil(t, x2)
	defer x2.Close()
	beginLarge(t, x2, 1, verbBig, 12<<20)
	waitFor(t, 10*time.Second, "x2's message waits for room", func() bool { return requester.Stats().InboundWaiters == 1 })

	// 8 MiB free, and the responder's account empty: its 2 MiB answer fits.
	resp, err := requester.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("read"))
	require.NoError(t, err, "a 2 MiB response with 8 MiB of inbound room free")
	assert.Len(t, resp, 2<<20)
}

// dialEager is dialAs offering wire.CapEagerResponses, as a node does:
// the acceptor writes large responses' parts without waiting for grants.
func dialEager(t *testing.T, addr string, id string, lane routing.Lane) net.Conn {
	t.Helper()
	conn, err := smallReadBuffer(16<<10).Dial("tcp", addr)
	require.NoError(t, err)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := wire.AppendHello(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		Lane: uint8(lane), Cluster: "test", Node: id, Capabilities: wire.CapEagerResponses})
	_, err = conn.Write(b)
	require.NoError(t, err)
	raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	reply, err := wire.DecodeReply(raw)
	require.NoError(t, err)
	require.Equal(t, wire.Accepted, reply.Reason)
	require.NotZero(t, reply.Capabilities&wire.CapEagerResponses, "eager responses agreed")
	_ = conn.SetDeadline(time.Time{})
	return conn
}

// TestRefusingManyLargeResponsesDoesNotCloseTheConnection: a requester
// may refuse any large response it is sent (no room for it, or nobody
// waits for it any more), and with eager responses (wire.CapEagerResponses)
// the responder has often written the whole response by the time the
// refusal comes. A node writes its refusals as control frames on its own
// connection's writer, all that are pending in one go, so they reach the
// responder in bursts when that writer was held up. The responder queued
// every grant or refusal that came while any response was in flight,
// whether or not it was for one still in flight, and took more than
// maxInbox (256) queued for "grants or refusals it was never asked for":
// it closed the connection as bad input, failing every response (and so
// every request) on it. Here a requester refuses 300 responses it was
// sent, one refusal each, while the responder is blocked writing more.
func TestRefusingManyLargeResponsesDoesNotCloseTheConnection(t *testing.T) {
	const (
		verbAsk  transport.Verb = 121
		verbMark transport.Verb = 122
		requests                = 400
		refusals                = 300
	)
	c := newCluster(t, 1, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 30 * time.Second // the raw requester does not ping
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 32 << 10
		cfg.Memory.Outbound = transport.Limits{PerConnection: 256 << 20, PerPeer: 256 << 20, Node: 512 << 20}
	})
	responder := c.Nodes[0]
	answer := make([]byte, 260<<10) // two parts; shared, as a large response is not copied
	responder.Handle(verbAsk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return answer, nil
	}))
	responder.Handle(verbMark, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	c.Members.Add(cluster.Member{ID: "r", Addr: "127.0.0.1:1"})
	conn := dialEager(t, responder.Addr().String(), "r", routing.Small)
	defer conn.Close()
	var out []byte
	for i := range requests {
		out = append(out, requestFrame(uint64(i+1), verbAsk, []byte("read"))...)
	}
	_, err := conn.Write(out)
	require.NoError(t, err)

	// Read the responses until refusals of them have begun, then stop
	// reading at the header of a whole part: the rest of it does not fit
	// in the sockets' buffers, so the responder's writer is blocked in its
	// write, with responses in flight.
	src := bufio.NewReader(conn)
	var begun []uint32
	var hdr [wire.FrameHeaderSize]byte
	for {
		_, err := io.ReadFull(src, hdr[:])
		require.NoError(t, err)
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		if fh.Kind == wire.FrameLargeMore && fh.Length == wire.DefaultMaxFramePayload && len(begun) >= refusals {
			break
		}
		_, err = io.CopyN(io.Discard, src, int64(fh.Length))
		require.NoError(t, err)
		if fh.Kind == wire.FrameLargeBegin && len(begun) < refusals {
			begun = append(begun, fh.Stream)
		}
	}
	// One refusal for each of 300 responses begun (no room for them), then
	// a request of another verb: once its handler runs, the responder has
	// read the refusals.
	var refuse []byte
	for _, s := range begun {
		f := wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded})
		refuse = append(append(refuse, wire.AppendFrameHeader(nil, wire.FrameRefuse, s, f)...), f...)
	}
	refuse = append(refuse, requestFrame(requests+1, verbMark, nil)...)
	_, err = conn.Write(refuse)
	require.NoError(t, err)
	marked := func() bool {
		for _, s := range responder.Stats().Stages {
			if s.Verb == verbMark {
				return s.Started == 1
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, "the responder read the refusals, or closed the connection", func() bool {
		return marked() || responder.Stats().InboundMalformed > 0
	})
	require.Zero(t, responder.Stats().InboundMalformed, "the requester's refusals taken for bad input")

	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, src)
	}()
	accounted := func() (n uint64, reset uint64) {
		for _, cs := range responder.Stats().Conns {
			if cs.Peer == "r" && cs.Lane == routing.Small {
				n += cs.MessagesSent
				for _, d := range cs.Dropped {
					n += d
				}
				reset += cs.Dropped[transport.ReasonConnectionReset]
			}
		}
		return n, reset
	}
	waitFor(t, 30*time.Second, "every response written or dropped", func() bool {
		n, _ := accounted()
		return n == requests+1
	})
	_, reset := accounted()
	assert.Zero(t, reset, "responses failed with the connection")
	conn.Close()
	<-drained
}

// TestLargestMessageGetsThroughWhileAStreamIsOpen: the limits promise
// that "a large message always gets through" and that "no combination of
// limits wedges a connection". A peer's open stream session holds its
// buffer (Streams.SessionBuffer, 4 MiB) from the peer's inbound account
// for as long as it is open. A large message that fits the peer's limit
// (MaxMessageSize may be as large as PerPeer) but not beside that buffer
// waited for room that nothing would free, and as the first waiter at the
// peer's account it held every later allocation of the peer's behind it:
// the peer's small messages too stopped being read. A stream connection
// is now refused (ErrOverloaded) when its buffer would leave less than
// the largest message's room.
func TestLargestMessageGetsThroughWhileAStreamIsOpen(t *testing.T) {
	const (
		verbBig    transport.Verb = 123
		verbSmall  transport.Verb = 124
		verbStream transport.Verb = 125
	)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 16 << 20
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 16 << 20, Node: 64 << 20}
	})
	sender, receiver := c.Nodes[0], c.Nodes[1]
	got := make(chan int, 2)
	receiver.Handle(verbBig, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		got <- len(m.Payload)
		return nil, nil
	}))
	receiver.Handle(verbSmall, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		got <- len(m.Payload)
		return nil, nil
	}))
	streamDone := make(chan struct{})
	receiver.HandleStream(verbStream, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		defer close(streamDone)
		_, _ = io.Copy(io.Discard, s) // until the sender closes it
	}))
	s, err := sender.OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStream)
	if err == nil {
		_, err = s.Write([]byte("hello"))
		require.NoError(t, err)
		defer func() {
			require.NoError(t, s.Close())
			<-streamDone
		}()
		waitFor(t, 5*time.Second, "the stream session's buffer held", func() bool {
			return receiver.Stats().InboundHeld >= 4<<20
		})
	}
	// Refused for good: under these limits it can never fit beside the
	// largest message's room, whatever closes.
	require.ErrorIs(t, err, transport.ErrRefused, "a stream session that leaves no room for the largest message")
	require.NotErrorIs(t, err, transport.ErrOverloaded, "not a refusal to retry")

	// 14 MiB: within MaxMessageSize and PerPeer, not beside the 4 MiB.
	require.NoError(t, sender.Send(context.Background(), c.ID(1), verbBig, make([]byte, 14<<20)))
	require.NoError(t, sender.Send(context.Background(), c.ID(1), verbSmall, []byte("after")))
	var sizes []int
	for range 2 {
		select {
		case n := <-got:
			sizes = append(sizes, n)
		case <-time.After(10 * time.Second):
			t.Fatalf("delivered %v; the receiver waits for room: %d waiters, %d bytes held",
				sizes, receiver.Stats().InboundWaiters, receiver.Stats().InboundHeld)
		}
	}
	assert.ElementsMatch(t, []int{14 << 20, 5}, sizes)
}

// TestStreamsTakeNoMoreThanTheLargestMessageLeaves: with a peer's inbound
// limit of 20 MiB and messages of up to 16 MiB, a stream session (4 MiB)
// is taken and a 14 MiB message (a 16 MiB buffer) still gets through
// beside it, while a second stream connection, one of its own (32 KiB),
// is refused: it would leave less than the largest message's room.
func TestStreamsTakeNoMoreThanTheLargestMessageLeaves(t *testing.T) {
	const (
		verbBig    transport.Verb = 123
		verbStream transport.Verb = 125
	)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 16 << 20
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 20 << 20, Node: 64 << 20}
	})
	sender, receiver := c.Nodes[0], c.Nodes[1]
	got := make(chan int, 1)
	receiver.Handle(verbBig, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		got <- len(m.Payload)
		return nil, nil
	}))
	receiver.HandleStream(verbStream, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(io.Discard, s)
	}))
	s, err := sender.OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStream)
	require.NoError(t, err, "a session that leaves the largest message's room")
	defer s.Close()
	_, err = sender.OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStream, transport.OwnConnection())
	require.ErrorIs(t, err, transport.ErrOverloaded, "a stream connection that would not")

	require.NoError(t, sender.Send(context.Background(), c.ID(1), verbBig, make([]byte, 14<<20)))
	assert.Equal(t, 14<<20, within(t, got, 10*time.Second, "the 14 MiB message beside the open stream"))
}

// TestRefusedStreamConnectionsKeepTheNodeWideCount: a stream connection
// refused for its peer's share lowered the node-wide count of what stream
// connections hold by its buffer, which it had never raised: each such
// refusal let the node take one more buffer's worth of stream connections
// than its limit leaves beside the largest message. Here the node's limit
// leaves 11 MiB: two sessions (8 MiB) fit, a third does not, however many
// connections of their own n1 was refused before.
func TestRefusedStreamConnectionsKeepTheNodeWideCount(t *testing.T) {
	const verbStream transport.Verb = 125
	c := newCluster(t, 4, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 16 << 20
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 20 << 20, Node: 27 << 20}
	})
	receiver := c.Nodes[3]
	receiver.HandleStream(verbStream, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(io.Discard, s)
	}))
	open := func(from int, opts ...transport.StreamOption) error {
		s, err := c.Nodes[from].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(3), verbStream, opts...)
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return err
	}
	require.NoError(t, open(0), "n1's session: its whole share (4 MiB)")
	for range 200 { // 32 KiB each: 6.25 MiB in all
		require.ErrorIs(t, open(0, transport.OwnConnection()), transport.ErrOverloaded, "beyond n1's share")
	}
	require.NoError(t, open(1), "n2's session: 8 MiB node-wide")
	require.ErrorIs(t, open(2), transport.ErrOverloaded, "n3's session: 12 MiB, past the node's 11")
}
