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

// TestALargeMessageBegunAfterTheBackChannelClosedIsNotCounted: a node
// under OverloadReject, its room full, is shutting down and has closed
// its side of a peer's large-lane connection (finishInbound) when the
// peer, which has not read that end yet, begins a large one-way message.
// The node has no room for it, and no way to tell the peer so: the
// refusal is not written. Such a message is its sender's to count, or to
// send again on its next connection (where it ends in its one outcome),
// as one whose connection ended before any part of it came is; the node
// counted it dropped as overloaded all the same, a second outcome for a
// message that its sender then delivers elsewhere.
func TestALargeMessageBegunAfterTheBackChannelClosedIsNotCounted(t *testing.T) {
	const verbHold transport.Verb = 241
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 250 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.InboundOverload = transport.OverloadReject
		cfg.Timeouts.Keepalive = time.Minute
	})
	node := c.Nodes[0]
	gate := make(chan struct{})
	node.Handle(verbHold, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		<-gate
		return nil, nil
	}))
	c.Members.Add(cluster.Member{ID: "filler", Addr: "127.0.0.1:1"})
	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	addr := node.Addr().String()

	// A one-way message whose handler holds it fills the node's room.
	filler := dialAs(addr, "filler", routing.Small)
	require.NotNil(t, filler)
	defer filler.Close()
	fill := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbHold), PayloadLength: 250 << 10})
	fill = append(fill, make([]byte, 250<<10)...)
	_, err := filler.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, fill), fill...))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the node full", func() bool { return node.Stats().InboundHeld >= 250<<10 })

	conn := dialAs(addr, "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()

	shut := make(chan error, 1)
	go func() { shut <- node.Shutdown(ctxTimeout(t, 20*time.Second)) }()
	defer func() {
		close(gate)
		require.NoError(t, within(t, shut, 30*time.Second, "Shutdown"))
	}()

	// The node closes its side of each connection: read to its end.
	for _, c := range []net.Conn{filler, conn} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, bufio.NewReader(c))
		require.NoError(t, err, "the back channel ends")
	}
	require.NoError(t, filler.(*net.TCPConn).CloseWrite())

	// The begin, which finds no room, then this side's end.
	h := wire.AppendHeader(nil, &wire.Header{ID: 2, Verb: uint32(verbHold), PayloadLength: 200 << 10})
	_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h), h...))
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	waitFor(t, 10*time.Second, "the connections ended", func() bool { return node.Stats().InboundConnections == 0 })
	// Nothing of mallory's arrived but that begin: nothing is counted.
	st := outcomesOf(node.Stats(), "mallory")
	assert.Zero(t, st.droppedIn[transport.ReasonOverloaded],
		"a large message whose refusal could not be written is counted dropped")
	assert.Equal(t, outcomes{}, st)
}

// TestAnEmptyLargeMessageBegunAfterTheBackChannelClosedIsNotDelivered: an
// empty large message is complete once its grant is written, and its
// sender counts it sent once it reads the grant. Begun after a finishing
// Shutdown closed the back channel, its grant is not written, and its
// sender, which reads the end instead, counts it dropped (connection
// reset) and hands it to OnDropped; the node delivered it all the same:
// two outcomes, and a hint replayed from OnDropped runs it twice.
func TestAnEmptyLargeMessageBegunAfterTheBackChannelClosedIsNotDelivered(t *testing.T) {
	const verbEmpty transport.Verb = 242
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = time.Minute
	})
	node := c.Nodes[0]
	ran := make(chan struct{}, 1)
	node.Handle(verbEmpty, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		ran <- struct{}{}
		return nil, nil
	}))
	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	conn := dialAs(node.Addr().String(), "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()

	shut := make(chan error, 1)
	go func() { shut <- node.Shutdown(ctxTimeout(t, 20*time.Second)) }()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, bufio.NewReader(conn))
	require.NoError(t, err, "the back channel ends")

	h := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbEmpty)})
	_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h), h...))
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	require.NoError(t, within(t, shut, 30*time.Second, "Shutdown"))

	assert.Zero(t, len(ran), "the handler ran for a message whose grant its sender never read")
	assert.Equal(t, outcomes{}, outcomesOf(node.Stats(), "mallory"))
}
