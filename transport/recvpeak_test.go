package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestRecvQueuePeakOfALiveConnectionSurvivesAnotherEnding: a peer may
// have two inbound connections on one lane at once (one it gave up on,
// not yet ended here, and its successor). Both report to the peer's one
// receive-queue Peak, whose intervals start from the last reading, so
// that a reader that stopped reading keeps reporting the backlog it left
// in its socket. The end of the other connection observed 0 there: the
// blocked connection, whose socket still holds its backlog, then read 0
// at every collection.
func TestRecvQueuePeakOfALiveConnectionSurvivesAnotherEnding(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
	})
	release := newGate()
	defer release.open()
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		return nil, release.wait(ctx) // the reader runs it, and reads nothing more meanwhile
	}), transport.Inline())
	peak := func() int64 {
		return sumWhere(collect(t, reader)["internode.socket.recv_queue_peak_bytes"], "peer", string(c.ID(0)), "lane", "small")
	}
	addr := c.Nodes[1].Addr().String()
	inbound := func() int { return c.Nodes[1].Stats().InboundConnections }
	base := inbound()

	// n1's connection: one write of 32 one-way messages of 1 KiB; the
	// reader reads the first, measures the 31 behind it, and blocks in
	// the first one's handler.
	conn := dialAs(addr, string(c.ID(0)), routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	var frames []byte
	for i := range 32 {
		msg := wire.AppendHeader(nil, &wire.Header{ID: uint64(i + 1), Verb: uint32(verbData), PayloadLength: 1 << 10})
		msg = append(msg, make([]byte, 1<<10)...)
		frames = append(frames, wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg)...)
		frames = append(frames, msg...)
	}
	_, err := conn.Write(frames)
	require.NoError(t, err)
	within(t, started, 5*time.Second, "the first message's handler")
	_ = peak() // the interval in which the reader read
	blocked := peak()
	t.Logf("receive queue peak of the blocked reader: %d bytes", blocked)
	require.Positive(t, blocked, "the bytes behind the first message")

	// Another connection of n1's on the same lane, which ends.
	other := dialAs(addr, string(c.ID(0)), routing.Small)
	require.NotNil(t, other)
	waitFor(t, 5*time.Second, "the other connection served", func() bool { return inbound() == base+2 })
	other.Close()
	waitFor(t, 5*time.Second, "the other connection ended", func() bool { return inbound() == base+1 })
	_ = peak() // the interval in which it ended
	assert.Equal(t, blocked, peak(), "the blocked reader's socket still holds its backlog")
}

// TestRecvQueuePeakOfAPausedReader: a reader paused for inbound capacity
// reads nothing, and what its peer sends meanwhile waits in its socket's
// receive queue — the backlog the receive-queue peak is there to show.
// It was measured only when reading resumed: for as long as the pause
// lasted, every collection reported the depth read before it (little
// or none: the reader had kept up), and a pause that ended with the connection (its
// sender gave up on it, as one whose writes stall is cut off after
// Timeouts.Write) never reported the backlog at all, in the metric or in
// Stats.
func TestRecvQueuePeakOfAPausedReader(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.MaxMessageSize = 64 << 10
		cfg.Lanes.Sockets[routing.Small].NotSentLowat = -1 // what is written waits in the sockets
	})
	release := newGate()
	defer release.open()
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, release.wait(ctx)
	}), transport.Concurrent(64))
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.ID(1)
	peak := func() int64 {
		return sumWhere(collect(t, reader)["internode.socket.recv_queue_peak_bytes"], "peer", string(c.ID(0)), "lane", "small")
	}
	// The receiver's socket queue is empty, or nearly, as the pause begins.
	payload := make([]byte, 16<<10)
	sendUntilPaused(t, n0, n1, n2, payload)
	_ = peak()
	before := n1.Stats().Total().RecvQueueMax
	require.Less(t, before, int64(3*len(payload)), "the deepest queue measured before the pause's backlog")
	// Sent during the pause: they wait in the receive queue.
	for range 4 {
		require.NoError(t, n0.Send(context.Background(), n2, verbData, payload))
	}
	waitFor(t, 5*time.Second, "the messages sent during the pause wait in the receive queue", func() bool {
		return transport.RecvQueueDepth(n1, c.ID(0), routing.Small) >= 3*len(payload)
	})
	depth := transport.RecvQueueDepth(n1, c.ID(0), routing.Small)
	t.Logf("receive queue of the paused reader: %d bytes; the deepest measured before the messages sent during the pause: %d", depth, before)
	assert.Eventually(t, func() bool { return n1.Stats().Total().RecvQueueMax >= int64(3*len(payload)) },
		2*time.Second, time.Millisecond, "the paused reader's backlog is measured")
	assert.GreaterOrEqual(t, peak(), int64(3*len(payload)), "the interval holds the backlog")
	assert.GreaterOrEqual(t, peak(), int64(3*len(payload)), "and the next, the reader still paused")

	// The sender dies with the reader still paused: the backlog is never
	// read, and stays counted.
	require.NoError(t, n0.Close())
	waitFor(t, 20*time.Second, "the receiver's inbound connection is gone", func() bool {
		return n1.Stats().InboundConnections == 0
	})
	assert.GreaterOrEqual(t, n1.Stats().Total().RecvQueueMax, int64(3*len(payload)))
}

// TestRecvQueuePeakOfABlockedReader: a reader that stops reading without
// pausing for capacity — blocked in an Inline handler, or handing a part
// to a ReaderHandler that reads slowly — measures nothing until it reads
// again. What its peer sends meanwhile waits in the socket, and every
// collection reported the depth read before it: here, none.
func TestRecvQueuePeakOfABlockedReader(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
	})
	release := newGate()
	defer release.open()
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		return nil, release.wait(ctx) // the reader runs it, and reads nothing more meanwhile
	}), transport.Inline())
	n1, from := c.Nodes[1], c.ID(0)
	peak := func() int64 {
		return sumWhere(collect(t, reader)["internode.socket.recv_queue_peak_bytes"], "peer", string(from), "lane", "small")
	}
	conn := dialAs(n1.Addr().String(), string(from), routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	frame := func(id uint64) []byte {
		msg := wire.AppendHeader(nil, &wire.Header{ID: id, Verb: uint32(verbData), PayloadLength: 1 << 10})
		msg = append(msg, make([]byte, 1<<10)...)
		return append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...)
	}
	// The first message alone: read with nothing behind it, its handler
	// blocks the reader.
	_, err := conn.Write(frame(1))
	require.NoError(t, err)
	within(t, started, 5*time.Second, "the first message's handler")
	var behind []byte
	for i := range 31 {
		behind = append(behind, frame(uint64(i+2))...)
	}
	_, err = conn.Write(behind)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the messages behind it wait in the receive queue", func() bool {
		return transport.RecvQueueDepth(n1, from, routing.Small) >= len(behind)
	})
	assert.GreaterOrEqual(t, peak(), int64(len(behind)), "the interval holds the backlog")
	assert.GreaterOrEqual(t, peak(), int64(len(behind)), "and the next, the reader still blocked")
	assert.GreaterOrEqual(t, n1.Stats().Total().RecvQueueMax, int64(len(behind)), "Stats keeps the maximum")
}
