package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestLargeMessagesWaitingForRoomAreBoundedPerConnection: a large
// message that waits for inbound room (OverloadPause, the room full)
// keeps its header, and the copy of its parameter block (up to
// wire.MaxParamsSize, 4 KiB), from its FrameLargeBegin while it waits,
// outside the limits: its room is taken only once granted. A connection
// took up to 64 of them (maxInboundStreams), where a sender begins 8 at
// once: 16 large-lane connections of 4 peers held 4.5 MB of heap beside
// a 1 MiB inbound limit that Stats showed full, and the node's heap grew
// by some 280 KiB for every connection any member (or, with
// AcceptUnknownPeers, anyone) opened, however full the limits.
func TestLargeMessagesWaitingForRoomAreBoundedPerConnection(t *testing.T) {
	const limit = 1 << 20
	c := newCluster(t, 1, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: limit, Node: limit}
		cfg.Memory.MaxMessageSize = limit
	})
	node := c.Nodes[0]
	node.Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	const peers, connsPerPeer, perConn = 4, transport.DefaultMaxConnsPerPeer, 64
	for i := range peers {
		c.Members.Add(cluster.Member{ID: cluster.NodeID(fmt.Sprintf("w%d", i)), Addr: "127.0.0.1:1"})
	}
	addr := node.Addr().String()
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	drain := func(conn net.Conn) {
		go func() { _, _ = io.Copy(io.Discard, conn) }()
	}

	// The node's room filled by one large message, granted and begun.
	filler := dialAs(addr, "w0", routing.Large)
	require.NotNil(t, filler)
	conns = append(conns, filler)
	h := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbBlock), PayloadLength: limit})
	_, err := filler.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h), h...))
	require.NoError(t, err)
	_ = filler.SetReadDeadline(time.Now().Add(5 * time.Second))
	require.True(t, awaitBack(filler, wire.FrameGrant, 1), "the filler is granted")
	_ = filler.SetReadDeadline(time.Time{})
	part := make([]byte, 64<<10)
	_, err = filler.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...))
	require.NoError(t, err)
	drain(filler)
	waitFor(t, 5*time.Second, "the filler holds the room", func() bool { return node.Stats().InboundHeld >= limit })

	// Every peer's large connections, dialled first, then begin as many
	// large messages as a connection takes (64), each with a full
	// parameter block: none finds room.
	var fresh []net.Conn
	for p := range peers {
		for k := range connsPerPeer {
			if p == 0 && k == 0 {
				fresh = append(fresh, filler) // its other streams
				continue
			}
			conn := dialAs(addr, fmt.Sprintf("w%d", p), routing.Large)
			require.NotNil(t, conn, "peer %d connection %d", p, k)
			conns = append(conns, conn)
			drain(conn)
			fresh = append(fresh, conn)
		}
	}
	params := wire.AppendParam(nil, "k", bytes.Repeat([]byte{'v'}, wire.MaxParamsSize-4))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	begun := 0
	for k, conn := range fresh {
		var frames []byte
		for s := uint32(2); s <= perConn; s++ {
			// IDs unique to the peer: a message begun again with a refused
			// one's header is refused again, as begun again after its
			// refusal went unread, and not counted a second time.
			h := wire.AppendHeader(nil, &wire.Header{ID: uint64(k)<<32 | uint64(s), Verb: uint32(verbBlock), Params: params, PayloadLength: 1})
			frames = append(frames, wire.AppendFrameHeader(nil, wire.FrameLargeBegin, s, h)...)
			frames = append(frames, h...)
			begun++
		}
		_, err := conn.Write(frames)
		require.NoError(t, err)
	}
	refused := func(st transport.Stats) (n int) {
		for _, cs := range st.Conns {
			n += int(cs.DroppedInbound[transport.ReasonOverloaded])
		}
		return n
	}
	waitFor(t, 10*time.Second, "every large message begun waits or was refused", func() bool {
		st := node.Stats()
		return st.InboundWaiters+refused(st) == begun
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	st := node.Stats()
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d large messages begun on %d connections after the room filled: %d wait, %d refused; Stats holds %d bytes; heap grew by %d bytes",
		begun, len(fresh), st.InboundWaiters, refused(st), st.InboundHeld, grew)
	assert.LessOrEqual(t, st.InboundHeld, int64(limit), "what Stats says is held")
	// What a connection's waiting large messages hold outside the limits:
	// the headers of as many as a sender begins at once (8), with their
	// bookkeeping.
	bound := int64(len(fresh)) * 8 * (wire.MaxHeaderSize + 2<<10)
	assert.LessOrEqual(t, grew, bound, "the large messages waiting for room hold at most 8 headers a connection outside the limits")
}
