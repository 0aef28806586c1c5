package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestRejectedFramesTrickledInHoldNoFrameBuffers: under OverloadReject a
// batch frame that finds no room is read only to be rejected. The reader
// allocated a buffer of the frame's whole length as soon as its header
// arrived, outside the limits, and held it for as long as the peer took
// to send the frame: peers that trickle such frames on many connections
// held a frame's length each (256 KiB at most, about 1 GiB at MaxConns
// 4096). Sixty-four connections each send the start of a 200 KiB
// request the node cannot take; the node's Go heap must grow by much less
// than the sum of those frames, and each request must still be refused
// with ErrOverloaded once its frame has come whole.
func TestRejectedFramesTrickledInHoldNoFrameBuffers(t *testing.T) {
	const (
		conns   = 64
		payload = 200 << 10
		sent    = 4 << 10 // of each frame, before it stops
	)
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Memory.MaxMessageSize = 250 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.InboundOverload = transport.OverloadReject
		cfg.Timeouts.Keepalive = time.Minute
	})
	node := c.Nodes[0]
	addr := node.Addr().String()
	// A one-way message whose handler holds it fills the node's 256 KiB:
	// every frame after it is rejected.
	const verbHold transport.Verb = 231
	gate := make(chan struct{})
	defer close(gate)
	node.Handle(verbHold, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		<-gate
		return nil, nil
	}))
	filler := dialAs(addr, "filler", routing.Small)
	require.NotNil(t, filler)
	defer filler.Close()
	fill := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbHold), PayloadLength: 250 << 10})
	fill = append(fill, make([]byte, 250<<10)...)
	_, err := filler.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, fill), fill...))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the node full", func() bool { return node.Stats().InboundHeld >= 256<<10 })
	first := requestFrame(1, verbEcho, make([]byte, 20<<10))
	big := requestFrame(2, verbEcho, make([]byte, payload))

	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse)
	}
	before := heap()

	peers := make([]net.Conn, conns)
	backs := make([]*bufio.Reader, conns)
	for i := range peers {
		conn := dialAs(addr, fmt.Sprintf("trickler-%d", i), routing.Small)
		require.NotNil(t, conn, "connection %d refused", i)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		peers[i], backs[i] = conn, bufio.NewReader(conn)
	}
	// A frame refused whole first: its answer says the reader is past it,
	// at the big frame's header, which comes in the same write.
	for _, conn := range peers {
		_, err := conn.Write(append(append([]byte(nil), first...), big[:wire.FrameHeaderSize+sent]...))
		require.NoError(t, err)
	}
	for i, back := range backs {
		require.Equal(t, wire.FailureOverloaded, rejection(t, back, 1), "connection %d", i)
	}

	// The readers now wait for the rest of the big frames. What they hold
	// meanwhile is measured a few times over a second, and must stay well
	// below the sum of the frames.
	sum := int64(conns * len(big))
	bound := sum / 4
	var grown int64
	for start := time.Now(); time.Since(start) < time.Second && grown <= bound; time.Sleep(50 * time.Millisecond) {
		grown = max(grown, heap()-before)
	}
	t.Logf("the heap grew by %d KiB for %d KiB of frames", grown>>10, sum>>10)
	assert.Less(t, grown, bound, "the heap grew by %d KiB while %d frames of %d KiB (%d KiB) trickled in",
		grown>>10, conns, len(big)>>10, sum>>10)

	// The frames end: each request is refused, as before.
	for _, conn := range peers {
		_, err := conn.Write(big[wire.FrameHeaderSize+sent:])
		require.NoError(t, err)
	}
	for i, back := range backs {
		require.Equal(t, wire.FailureOverloaded, rejection(t, back, 2), "connection %d", i)
	}
}

// rejection reads the back channel until the response to id and returns
// its failure code.
func rejection(t *testing.T, r *bufio.Reader, id uint64) wire.FailureCode {
	t.Helper()
	var hdr [wire.FrameHeaderSize]byte
	for {
		_, err := io.ReadFull(r, hdr[:])
		require.NoError(t, err)
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		payload := make([]byte, fh.Length)
		_, err = io.ReadFull(r, payload)
		require.NoError(t, err)
		if fh.Kind != wire.FrameBatch {
			continue
		}
		for off := 0; off < len(payload); {
			var h wire.Header
			n, err := h.Decode(payload[off:], wire.DefaultMaxFramePayload)
			require.NoError(t, err)
			body := payload[off+n : off+n+int(h.PayloadLength)]
			off += n + int(h.PayloadLength)
			if h.ID != id {
				continue
			}
			require.NotZero(t, h.Flags&wire.FlagFailure, "response %d is no failure", id)
			f, err := wire.DecodeFailure(body)
			require.NoError(t, err)
			return f.Code
		}
	}
}
