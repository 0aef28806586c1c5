package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestAResponseWriteBlockedOnAPeerThatStoppedReadingShowsItsQueue: a peer
// sends requests and reads none of the responses, which fill the socket's
// send queue on the connection it sent them on. The socket measurement
// promises that "a write blocked on a peer that stopped reading" shows its
// queue at each collection; it read the send queues of the node's own
// connections only, never those its responses go back on, and a node
// stuck writing responses to a peer showed no send queue at all.
func TestAResponseWriteBlockedOnAPeerThatStoppedReadingShowsItsQueue(t *testing.T) {
	const verbAsk transport.Verb = 144
	const requests, answerSize = 256, 4 << 10
	reader := metric.NewManualReader()
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = time.Minute // the peer sends nothing once its requests are out
		cfg.Timeouts.Write = time.Minute
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 8 << 10
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
	})
	n := c.Nodes[0]
	c.Members.Add(cluster.Member{ID: "deaf", Addr: closedAddr(t)})
	var handled atomic.Int64
	answer := make([]byte, answerSize)
	n.Handle(verbAsk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		handled.Add(1)
		return answer, nil
	}))

	conn := dialAsWith(smallReadBuffer(4<<10), n.Addr().String(), "deaf", routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	for i := range requests {
		_, err := conn.Write(requestFrame(uint64(i+1), verbAsk, []byte("hi")))
		require.NoError(t, err)
	}
	waitFor(t, 10*time.Second, "every request handled", func() bool { return handled.Load() == requests })
	waitFor(t, 10*time.Second, "responses unwritten", func() bool {
		for _, p := range n.Stats().Peers {
			if p.Peer == "deaf" {
				return p.OutboundHeld > requests*answerSize/2
			}
		}
		return false
	})

	// The responses' writer fills the socket and blocks there soon after
	// they are queued: a collection then reads the queue. (Before it did
	// not, however long the write stood.)
	waitFor(t, 10*time.Second, "the responses' socket send queue measured at collection", func() bool {
		data := collect(t, reader)
		return sumWhere(data["internode.socket.send_queue_peak_bytes"], "peer", "deaf", "lane", "small") > 0
	})
	st := laneStats(t, n, "deaf", routing.Small)
	assert.True(t, st.QueuesMeasured)
	assert.Positive(t, st.SendQueueMax, "the responses' socket send queue, full")
}
