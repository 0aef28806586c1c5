package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestSendQueuePeakOfABlockedWrite: a writer whose peer stopped reading
// blocks in its write once the socket's send buffer is full, and makes no
// more writes, so none is measured: the peak carried the reading taken
// after the write before — on a lane that was quiet until one coalesced
// write of many messages, nothing — for every collection while the write
// stayed blocked (up to Timeouts.Write), and then the connection was cut
// and its queue read empty. The full send queue of a stalled connection,
// what the peak is for, was never reported.
func TestSendQueuePeakOfABlockedWrite(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
			// One write of all that was sent within the window.
			cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
				if lane == routing.Small {
					return coalescing.NewFixed(50 * time.Millisecond)
				}
				return transport.DefaultCoalescing(lane)
			}
		}
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.MaxMessageSize = 64 << 10
		// Small fixed buffers, which the write below overfills.
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 64 << 10
		cfg.Lanes.Sockets[routing.Small].ReceiveBuffer = 64 << 10
		cfg.Lanes.Sockets[routing.Small].NotSentLowat = -1 // what is written waits in the sockets
	})
	release := newGate()
	defer release.open()
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, release.wait(ctx)
	}), transport.Concurrent(64))
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.ID(1)
	peak := func() int64 {
		return sumWhere(collect(t, reader)["internode.socket.send_queue_peak_bytes"], "peer", string(n2), "lane", "small")
	}
	// The sender's queue is empty, or nearly, as the pause begins.
	payload := make([]byte, 16<<10)
	sendUntilPaused(t, n0, n1, n2, payload)
	_ = peak()
	before := n0.Stats().Total().SendQueueMax
	// A burst within the coalescing window: one write of 512 KiB, more
	// than the two sockets hold.
	for range 32 {
		require.NoError(t, n0.Send(context.Background(), n2, verbData, payload))
	}
	depth, last := 0, -1
	waitFor(t, 5*time.Second, "the write fills the send queue, and blocks", func() bool {
		last, depth = depth, transport.SendQueueDepth(n0, n2, routing.Small)
		return depth >= 64<<10 && depth == last && n0.Stats().Total().PendingBytes > 0
	})
	require.Less(t, before, int64(depth)/2, "the deepest queue measured before the burst")
	t.Logf("send queue of the blocked write: %d bytes; the deepest measured before the burst: %d", depth, before)
	assert.GreaterOrEqual(t, peak(), int64(depth), "the interval holds the blocked write's queue")
	assert.GreaterOrEqual(t, peak(), int64(depth), "and the next, the write still blocked")
	assert.GreaterOrEqual(t, n0.Stats().Total().SendQueueMax, int64(depth), "Stats keeps the maximum")
}

// sendUntilPaused sends payload from n0 to to (n1's ID) one message at a
// time, each read before the next is sent, until n1's handlers hold its
// inbound capacity and its reader pauses: the sockets between them are
// empty, or nearly, as the pause begins.
func sendUntilPaused(t *testing.T, n0, n1 *transport.Transport, to cluster.NodeID, payload []byte) {
	t.Helper()
	throttled := func() bool { return n1.Stats().Total().Throttled > 0 }
	for !throttled() {
		before := n1.Stats().Total().MessagesReceived
		require.NoError(t, n0.Send(context.Background(), to, verbData, payload))
		waitFor(t, 5*time.Second, "the message read, or the reader paused", func() bool {
			return throttled() || n1.Stats().Total().MessagesReceived > before
		})
	}
}
