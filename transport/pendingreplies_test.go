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

// TestResponsesWaitingToBeWrittenArePending: a peer sends requests and
// reads none of their responses, which pile up on the node, queued on the
// connection's way back. Stats counts a lane's responses in MessagesSent
// and BytesSent once written, and in Dropped when they fail, but
// PendingMessages and PendingBytes, and the internode.queue.pending_*
// gauges read from them, counted only the lane's own connection's queue:
// hundreds of kilobytes of responses stuck behind a peer that stopped
// reading showed as nothing pending.
func TestResponsesWaitingToBeWrittenArePending(t *testing.T) {
	const requests = deafRequests
	n, reader, held := deafRequester(t, 143)

	st := laneStats(t, n, "deaf", routing.Small)
	require.Less(t, st.MessagesSent, uint64(requests), "setup: responses wait")
	assert.NotZero(t, st.PendingMessages, "responses queued, %d bytes held for them", held())
	// Held counts each queued message's entry beside its bytes, the
	// frame the deaf peer's socket blocks in the writing of (up to
	// wire.DefaultMaxFramePayload, 256 KiB) is out of the queue, and the
	// socket may take a few more meanwhile: a quarter of what is held.
	// Waited for: on a loaded machine the answers, all handled, were
	// still on their way to the connection's queue when one reading was
	// taken (116 872 pending of 1 068 672 held), and the deaf peer never
	// takes them, so they come to be pending.
	waitFor(t, 10*time.Second, "responses queued: pending bytes at least a quarter of those held", func() bool {
		return laneStats(t, n, "deaf", routing.Small).PendingBytes >= uint64(held()/4)
	})
	data := collect(t, reader)
	assert.NotZero(t, sumWhere(data["internode.queue.pending_messages"], "peer", "deaf", "lane", "small"))
	assert.NotZero(t, sumWhere(data["internode.queue.pending_bytes"], "peer", "deaf", "lane", "small"))
}

// deafRequests requests of deafRequester's, each answered with
// deafAnswerSize bytes.
const deafRequests, deafAnswerSize = 256, 4 << 10

// deafRequester starts a node whose member "deaf" sends it deafRequests
// requests for verb on the small lane, from a raw connection with a small
// receive buffer, and reads none of the answers. It returns once every
// request was handled and most of the answers are held, unwritten, with
// the node's metric reader and a reading of what it holds for "deaf".
func deafRequester(t *testing.T, verb transport.Verb) (*transport.Transport, *metric.ManualReader, func() int64) {
	t.Helper()
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
	answer := make([]byte, deafAnswerSize)
	n.Handle(verb, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		handled.Add(1)
		return answer, nil
	}))

	conn := dialAsWith(smallReadBuffer(4<<10), n.Addr().String(), "deaf", routing.Small)
	require.NotNil(t, conn)
	t.Cleanup(func() { conn.Close() })
	for i := range deafRequests {
		_, err := conn.Write(requestFrame(uint64(i+1), verb, []byte("hi")))
		require.NoError(t, err)
	}
	waitFor(t, 10*time.Second, "every request handled", func() bool { return handled.Load() == deafRequests })
	held := func() int64 {
		for _, p := range n.Stats().Peers {
			if p.Peer == "deaf" {
				return p.OutboundHeld
			}
		}
		return 0
	}
	waitFor(t, 10*time.Second, "most responses held, unwritten", func() bool { return held() > deafRequests*deafAnswerSize/2 })
	return n, reader, held
}
