package transport_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestLargeMessageHeadersCountAgainstInboundLimits: a FrameLargeBegin
// carries a header of up to wire.MaxHeaderSize bytes, of which up to
// wire.MaxParamsSize are its parameter block; the receiver keeps a copy
// of the block with the message until its handler is done with it. Room
// was taken for the payload alone (and the message's work entry), so a
// peer sending empty large messages with full parameter blocks to a busy
// handler made the node hold thirteen times its inbound limits while
// Stats said it held them: "the bytes the node holds for messages ...
// never exceed Config.Memory.Inbound" (doc.go).
func TestLargeMessageHeadersCountAgainstInboundLimits(t *testing.T) {
	inbound := transport.Limits{PerConnection: 512 << 10, PerPeer: 1 << 20, Node: 2 << 20}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = inbound
		cfg.Memory.MaxMessageSize = 128 << 10
	})
	node := c.Nodes[1]
	release := make(chan struct{})
	defer close(release)
	node.Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		<-release // a busy handler: what arrives waits for it
		return nil, nil
	}))
	conn := dialAs(node.Addr().String(), string(c.ID(0)), routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	grants := make(chan uint32, 64)
	go func() {
		r := bufio.NewReader(conn)
		var hdr [wire.FrameHeaderSize]byte
		for {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				close(grants)
				return
			}
			fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
			if err != nil {
				close(grants)
				return
			}
			if _, err := io.CopyN(io.Discard, r, int64(fh.Length)); err != nil {
				close(grants)
				return
			}
			if fh.Kind == wire.FrameGrant || fh.Kind == wire.FrameRefuse {
				grants <- fh.Stream
			}
		}
	}()

	// A parameter block of the largest size: one pair.
	params := wire.AppendParam(nil, "k", bytes.Repeat([]byte{'v'}, wire.MaxParamsSize-4))
	require.Len(t, params, wire.MaxParamsSize)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Empty one-way large messages, each sent once the one before it was
	// granted, until the node stops granting: its limits are reached.
	taken := 0
	for stream := uint32(1); stream < 100_000; stream++ {
		h := wire.AppendHeader(nil, &wire.Header{ID: uint64(stream), Verb: uint32(verbBlock), Params: params})
		_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, stream, h), h...))
		require.NoError(t, err)
		select {
		case s, ok := <-grants:
			require.True(t, ok, "the node closed the connection")
			require.Equal(t, stream, s)
			taken++
			continue
		case <-time.After(time.Second):
		}
		break // no room: it waits
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	st := node.Stats()
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d empty large messages taken; held per Stats %d bytes; heap grew by %d bytes", taken, st.InboundHeld, grew)
	assert.LessOrEqual(t, st.InboundHeld, inbound.PerPeer, "what Stats says is held")
	// What the node holds for them is at least their parameter blocks.
	assert.LessOrEqual(t, int64(taken)*wire.MaxParamsSize, inbound.PerPeer,
		"the parameter blocks of the messages waiting for their handler fit the peer's inbound limit")
}

// TestLargeMessageOfTheLimitWithParametersIsGranted: counting a large
// message's parameter block with its payload must not refuse, as larger
// than the inbound limits, a message of MaxMessageSize whose limits hold
// exactly that much, which validated limits allow: its room is capped at
// the limits.
func TestLargeMessageOfTheLimitWithParametersIsGranted(t *testing.T) {
	const size = 1 << 20
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: size, Node: size}
		cfg.Memory.MaxMessageSize = size
	})
	node := c.Nodes[1]
	node.Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	conn := dialAs(node.Addr().String(), string(c.ID(0)), routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	params := wire.AppendParam(nil, "k", bytes.Repeat([]byte{'v'}, wire.MaxParamsSize-4))
	h := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbBlock), Params: params, PayloadLength: size})
	_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h), h...))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(conn)
	for {
		var hdr [wire.FrameHeaderSize]byte
		_, err := io.ReadFull(r, hdr[:])
		require.NoError(t, err, "no answer to the message's begin")
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		body := make([]byte, fh.Length)
		_, err = io.ReadFull(r, body)
		require.NoError(t, err)
		if fh.Kind == wire.FrameRefuse {
			f, _ := wire.DecodeFailure(body)
			t.Fatalf("refused: %v", f)
		}
		if fh.Kind == wire.FrameGrant {
			assert.Equal(t, uint32(1), fh.Stream)
			return
		}
	}
}
