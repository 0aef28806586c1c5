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
