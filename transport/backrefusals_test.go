package transport_test

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// TestRefusalsAnAcceptorDoesNotReadAreBounded: a node refuses each large
// response nobody waits for with a FrameRefuse written back to its
// acceptor, queued for the lane's writer by the back channel's reader.
// An acceptor (a member, or whatever answers at a member's address) that
// begins response after response for requests never made, and reads
// nothing of what the node writes, had every refusal queued, with its
// failure, for as long as the writer's write took to time out
// (Timeouts.Write, 30 s): 300,000 begins, 8.7 MB on the wire, grew the
// node's heap by 23.7 MB, while Stats showed nothing held. Once the
// acceptor reads again, the node reads on.
func TestRefusalsAnAcceptorDoesNotReadAreBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("heap bound: the race detector's shadow memory inflates it")
	}
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 64 << 10
	})
	node := c.Nodes[0]
	conn := fakeSmallAcceptor(t, c)

	// Begins of responses to requests never made, in batches, on one
	// stream: each is refused, and never read. Written until they are
	// all in, or until the node stops reading them: a write it does not
	// take within a second.
	const begins, perWrite = 300_000, 1000
	var batch []byte
	for i := range perWrite {
		h := wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagResponse, ID: uint64(1<<40 + i), Verb: uint32(verbBlock), PayloadLength: 1})
		batch = append(batch, wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h)...)
		batch = append(batch, h...)
	}
	frameLen := len(batch) / perWrite
	refused := func() uint64 {
		return laneStats(t, node, "fake", routing.Small).DroppedInbound[transport.ReasonExpired]
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	written, stalled := 0, false
	for range begins / perWrite {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := conn.Write(batch)
		written += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			stalled = true
			break
		}
		require.NoError(t, err)
	}
	if !stalled {
		waitFor(t, 15*time.Second, "every begin refused", func() bool { return refused() == begins })
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := node.Stats()
	t.Logf("%d bytes of large responses begun for no request written (%d begins; the node stopped reading: %v): %d refused; Stats holds %d bytes in, %d out; heap grew by %d bytes",
		written, written/frameLen, stalled, refused(), st.InboundHeld, st.OutboundBytes, grew)
	assert.LessOrEqual(t, grew, int64(1<<20), "the refusals an acceptor leaves unread are bounded")

	// Once the acceptor reads, the node reads on: every begin written is
	// refused, the one cut by the write's deadline once finished.
	go func() { _, _ = io.Copy(io.Discard, conn) }()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	cut := written % len(batch)
	_, err := conn.Write(batch[cut : (cut+frameLen-1)/frameLen*frameLen])
	require.NoError(t, err)
	all := uint64((written + frameLen - 1) / frameLen)
	waitFor(t, 15*time.Second, "every begin written refused", func() bool { return refused() == all })
}

// fakeSmallAcceptor makes member "fake" of c a raw acceptor on loopback
// that takes c.Nodes[0]'s small lane without eager responses or S2 (each
// large response it begins waits for a grant or a refusal), has the node
// dial it, and returns the accepted connection, closed at the test's end.
func fakeSmallAcceptor(t *testing.T, c *transporttest.Cluster) net.Conn {
	t.Helper()
	node := c.Nodes[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	c.Members.Add(cluster.Member{ID: "fake", Addr: ln.Addr().String()})

	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
			hello, derr := wire.DecodeHello(raw)
			if err != nil || derr != nil || hello.Lane != uint8(routing.Small) {
				conn.Close()
				continue
			}
			caps := hello.Capabilities &^ (wire.CapEagerResponses | wire.CapBatchS2)
			_, err = conn.Write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion, Capabilities: caps, Message: "fake"}))
			if err != nil {
				conn.Close()
				continue
			}
			accepted <- conn
			return
		}
	}()
	require.NoError(t, node.Send(ctxTimeout(t, 10*time.Second), "fake", verbBlock, []byte("hello")))
	conn := within(t, accepted, 10*time.Second, "the node's small lane to the fake acceptor")
	t.Cleanup(func() { conn.Close() })
	return conn
}
