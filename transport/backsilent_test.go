package transport_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestAnAcceptorSilentBehindUnreadRefusalsIsJudgedDead: an acceptor
// begins large responses for requests never made until the node stops
// reading its back channel (the refusals it owes wait for a writer whose
// write the acceptor does not read), and then says nothing more, as a
// peer that hung does. With Timeouts.Write off, the back channel's
// silence check (Timeouts.Keepalive) is what judges it dead; the reader,
// waiting for the writer to take the refusals, never read again, so the
// check never ran and the connection stayed up for good.
func TestAnAcceptorSilentBehindUnreadRefusalsIsJudgedDead(t *testing.T) {
	const keepalive = 2 * time.Second
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 64 << 10
		cfg.Timeouts.Write = -1
		cfg.Timeouts.Keepalive = keepalive
	})
	node := c.Nodes[0]
	conn := fakeSmallAcceptor(t, c)

	const perWrite = 1000
	var batch []byte
	for i := range perWrite {
		h := wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagResponse, ID: uint64(1<<40 + i), Verb: uint32(verbBlock), PayloadLength: 1})
		batch = append(batch, wire.AppendFrameHeader(nil, wire.FrameLargeBegin, 1, h)...)
		batch = append(batch, h...)
	}
	stalled := false
	for range 1000 {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := conn.Write(batch)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			stalled = true
			break
		}
		require.NoError(t, err)
	}
	require.True(t, stalled, "the node stops reading an acceptor that reads none of its refusals")
	// From here the acceptor is silent, and reads nothing.
	waitFor(t, 5*keepalive, "the silent acceptor's connection judged dead", func() bool {
		return !laneStats(t, node, "fake", routing.Small).Connected
	})
}
