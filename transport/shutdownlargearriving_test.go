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

// TestShutdownWaitsForALargeRequestStillArriving: a peer's 512 KiB
// request is granted and half of it has arrived when the node's Shutdown
// begins. Shutdown waits for the requests being handled, and answers
// those that come meanwhile "shutting down"; the one still arriving was
// not counted among them, so Shutdown closed its connection under it,
// and its caller read the connection's end, not an answer.
func TestShutdownWaitsForALargeRequestStillArriving(t *testing.T) {
	const verbAsk transport.Verb = 237
	c := newCluster(t, 2, nil)
	victim := c.Nodes[1]
	victim.Handle(verbAsk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return []byte("ok"), nil
	}))
	c.Members.Add(cluster.Member{ID: "mallory", Addr: "127.0.0.1:1"})
	conn := dialAs(victim.Addr().String(), "mallory", routing.Large)
	require.NotNil(t, conn)
	defer conn.Close()
	back := bufio.NewReader(conn)
	// nextBack reads the back channel's next frame other than a beat.
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

	const size = 512 << 10
	h := wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagExpectsResponse, ID: 1, Verb: uint32(verbAsk), PayloadLength: size})
	_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h), h...))
	require.NoError(t, err)
	fh, err := nextBack()
	require.NoError(t, err)
	require.Equal(t, wire.FrameGrant, fh.Kind)
	part := make([]byte, size/2)
	_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...))
	require.NoError(t, err)

	shut := make(chan error, 1)
	go func() { shut <- victim.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	// Shutdown runs in its own goroutine: wait until it has begun
	// refusing, which a request sent now could reach the node before.
	waitFor(t, 10*time.Second, "the Shutdown began", func() bool { return victim.Health().Closed })

	_, _ = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...))
	fh, err = nextBack()
	require.NoError(t, err, "the request's caller read the connection's end, not its answer")
	require.Equal(t, wire.FrameBatch, fh.Kind, "its answer")
	rh, n, err := wire.DecodeHeader(payload, wire.DefaultMaxFramePayload)
	require.NoError(t, err)
	require.Equal(t, uint64(1), rh.ID)
	require.NotZero(t, rh.Flags&wire.FlagFailure, "answered shutting down")
	f, err := wire.DecodeFailure(payload[n : n+int(rh.PayloadLength)])
	require.NoError(t, err)
	require.Contains(t, f.Message, "shutting down")
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))
}
