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

// TestShutdownRefusesALargeRequestBegunAfterIt: a peer's 512 KiB request
// is half in when the node's Shutdown begins, and the peer begins a second
// one after that. Shutdown waits for the requests being handled or
// arriving when it began, and answers those that come meanwhile "shutting
// down"; the second was granted room instead, and Shutdown waited for all
// of it too, so that a peer that keeps sending large requests holds
// Shutdown until its context ends. The second must be refused at once,
// and Shutdown end once the first is answered.
func TestShutdownRefusesALargeRequestBegunAfterIt(t *testing.T) {
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
	begin := func(stream uint32, id uint64) {
		t.Helper()
		h := wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagExpectsResponse, ID: id, Verb: uint32(verbAsk), PayloadLength: size512K})
		_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, stream, h), h...))
		require.NoError(t, err)
	}
	part := make([]byte, size512K/2)

	begin(1, 1)
	fh, err := nextBack()
	require.NoError(t, err)
	require.Equal(t, wire.FrameGrant, fh.Kind)
	_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...))
	require.NoError(t, err)

	const shutdownWithin = 4 * time.Second
	shut := make(chan error, 1)
	go func() { shut <- victim.Shutdown(ctxTimeout(t, shutdownWithin)) }()
	// Shutdown runs in its own goroutine: wait until it has begun
	// refusing, which a request sent now could reach the node before.
	waitFor(t, 10*time.Second, "the Shutdown began", func() bool { return victim.Health().Closed })

	// The second request begins after Shutdown did; a caller that was
	// granted room sends half of it, and then waits.
	begin(3, 2)
	second, err := nextBack()
	require.NoError(t, err)
	secondPayload := payload
	if second.Kind == wire.FrameGrant {
		_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 3, part), part...))
		require.NoError(t, err)
	}

	// The first one's rest: it is answered.
	_, _ = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameLargeMore, 1, part), part...))
	fh, err = nextBack()
	require.NoError(t, err)
	require.Equal(t, wire.FrameBatch, fh.Kind, "the first request's answer")

	require.NoError(t, within(t, shut, 2*shutdownWithin, "Shutdown"),
		"Shutdown waited for a large request begun after it (its context ended first)")
	require.Equal(t, wire.FrameRefuse, second.Kind, "the request begun after Shutdown is refused at once")
	f, err := wire.DecodeFailure(secondPayload)
	require.NoError(t, err)
	require.Contains(t, f.Message, "shutting down")
}

const size512K = 512 << 10
