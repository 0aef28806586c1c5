package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestStreamedRequestOfAnEndedConnectionIsNotRun: a streamed request
// (ReaderHandler) whose first part the node reads after the request's
// connection ended — the part was in the reader's buffer already — is
// dropped as a connection reset, as a whole request is (handle): its
// caller has failed it already, and its answer has nowhere to go. Its
// handler ran, its context already cancelled, and it was counted received.
func TestStreamedRequestOfAnEndedConnectionIsNotRun(t *testing.T) {
	const (
		verbHoldReader transport.Verb = 150 // one-way, Inline: holds the connection's reader
		verbStreamed   transport.Verb = 151 // request, streamed
	)
	c := newCluster(t, 1, nil)
	node := c.Nodes[0]
	held, release := make(chan struct{}), newGate()
	defer release.open()
	node.Handle(verbHoldReader, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		close(held)
		<-release.ch // not ctx: the connection's end does not end a one-way message's
		return nil, nil
	}), transport.Inline())
	var ran atomic.Int64
	var ranCanceled atomic.Bool
	node.HandleReader(verbStreamed, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		ranCanceled.Store(ctx.Err() != nil)
		ran.Add(1)
		_, _ = io.Copy(io.Discard, body)
		return nil, nil
	}))

	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	conn := dialAs(node.Addr().String(), "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	// The streamed request begins, and is granted.
	partBehindAHeldReader(t, conn, wire.Header{Flags: wire.FlagExpectsResponse, ID: 1, Verb: uint32(verbStreamed)}, verbHoldReader)
	<-held
	// mallory leaves: the node closes its connections, and the request's
	// caller, were it a node, would fail it with ErrConnectionReset.
	c.Members.Remove("mallory")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the node did not close mallory's connection")
	release.open()

	dropped := func() uint64 {
		var n uint64
		for _, s := range node.Stats().Conns {
			if s.Peer == "mallory" {
				n += s.DroppedInbound[transport.ReasonConnectionReset]
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, "the streamed request handled or dropped", func() bool {
		return ran.Load() > 0 || dropped() > 0
	})
	require.Zero(t, ran.Load(), "the handler of a request whose connection had ended ran (its context cancelled at entry: %v)", ranCanceled.Load())
	require.Equal(t, uint64(1), dropped())
}

// TestStreamedMessageReadAfterCloseIsNotRun: a streamed message
// (ReaderHandler) whose first part the node reads once Close has begun —
// the part was in the reader's buffer already — is dropped as closed, as
// a whole message is (handle). Its handler ran while the transport
// closed, and it was counted received.
func TestStreamedMessageReadAfterCloseIsNotRun(t *testing.T) {
	const (
		verbHoldReader transport.Verb = 152 // one-way, Inline: holds the connection's reader until Close
		verbStreamed   transport.Verb = 153 // one-way, streamed
	)
	c := newCluster(t, 1, nil)
	node := c.Nodes[0]
	held := make(chan struct{})
	node.Handle(verbHoldReader, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		close(held)
		<-ctx.Done() // the transport's: Close ends it
		return nil, nil
	}), transport.Inline())
	var ran atomic.Int64
	node.HandleReader(verbStreamed, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		ran.Add(1)
		_, _ = io.Copy(io.Discard, body)
		return nil, nil
	}))

	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	conn := dialAs(node.Addr().String(), "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	partBehindAHeldReader(t, conn, wire.Header{ID: 1, Verb: uint32(verbStreamed)}, verbHoldReader)
	<-held
	require.NoError(t, node.Close())

	var dropped uint64
	for _, s := range node.Stats().Conns {
		if s.Peer == "mallory" {
			dropped += s.DroppedInbound[transport.ReasonClosed]
		}
	}
	require.Zero(t, ran.Load(), "a streamed message's handler ran after Close began")
	require.Equal(t, uint64(1), dropped)
}

// partBehindAHeldReader begins h, a streamed message of 16 bytes, as
// stream 1 on conn and waits for its grant; then, in one write, it sends
// an empty one-way message of verb hold, whose Inline handler holds the
// connection's reader, and h's one part, which the reader reads along
// with it into its buffer.
func partBehindAHeldReader(t *testing.T, conn net.Conn, h wire.Header, hold transport.Verb) {
	t.Helper()
	const length = 16
	h.PayloadLength = length
	begin := wire.AppendHeader(nil, &h)
	_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, begin), begin...))
	require.NoError(t, err)
	require.True(t, awaitBack(conn, wire.FrameGrant, 1))
	held := wire.AppendHeader(nil, &wire.Header{Verb: uint32(hold)})
	out := append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 2, held), held...)
	part := make([]byte, length)
	out = append(append(out, wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part)...), part...)
	_, err = conn.Write(out)
	require.NoError(t, err)
}
