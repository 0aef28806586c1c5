package transport_test

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestShutdownRefusesALargeRequestWaitingForRoom: a peer's 512 KiB
// request waits for inbound room that a one-way message's stalled handler
// holds when the node's Shutdown begins. Shutdown waited for the requests
// being handled and those granted room, not for this one, and closed the
// connection under it: its caller read a reset, not an answer. It must be
// refused at once, "shutting down", as a request begun after Shutdown is,
// so that its caller asks another node.
func TestShutdownRefusesALargeRequestWaitingForRoom(t *testing.T) {
	const verbAsk, verbPut transport.Verb = 238, 239
	held := newGate()
	defer held.open()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 600 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 128 << 10, PerPeer: 800 << 10, Node: 800 << 10}
	})
	victim := c.Nodes[0]
	victim.Handle(verbAsk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return []byte("ok"), nil
	}))
	victim.Handle(verbPut, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		return nil, held.wait(ctx)
	}))
	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	conn := dialAs(victim.Addr().String(), "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	back := bufio.NewReader(conn)
	var payload []byte
	nextBack := func() (wire.FrameHeader, error) {
		var hdr [wire.FrameHeaderSize]byte
		for {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(back, hdr[:]); err != nil {
				return wire.FrameHeader{}, err
			}
			fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
			if err != nil {
				return fh, err
			}
			payload = make([]byte, fh.Length)
			if _, err := io.ReadFull(back, payload); err != nil {
				return fh, err
			}
			if fh.Kind != wire.FrameBeat {
				return fh, nil
			}
		}
	}
	begin := func(stream uint32, h wire.Header) {
		t.Helper()
		hb := wire.AppendHeader(nil, &h)
		_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, stream, hb), hb...))
		require.NoError(t, err)
	}

	// A one-way message takes the room, and its handler holds it.
	begin(1, wire.Header{Verb: uint32(verbPut), PayloadLength: size512K})
	fh, err := nextBack()
	require.NoError(t, err)
	require.Equal(t, wire.FrameGrant, fh.Kind)
	part := make([]byte, size512K/2)
	for range 2 {
		_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...))
		require.NoError(t, err)
	}
	// The request waits for room.
	begin(3, wire.Header{Flags: wire.FlagExpectsResponse, ID: 1, Verb: uint32(verbAsk), PayloadLength: size512K})
	waitFor(t, 10*time.Second, "the request waiting for room", func() bool { return victim.Stats().InboundWaiters == 1 })

	shut := make(chan error, 1)
	go func() { shut <- victim.Shutdown(ctxTimeout(t, 4*time.Second)) }()
	fh, err = nextBack()
	require.NoError(t, err, "the waiting request is answered before the connection closes")
	require.Equal(t, wire.FrameRefuse, fh.Kind)
	require.Equal(t, uint32(3), fh.Stream)
	f, err := wire.DecodeFailure(payload)
	require.NoError(t, err)
	require.Contains(t, f.Message, "shutting down")
	held.open()
	require.NoError(t, within(t, shut, 8*time.Second, "Shutdown"))
}
