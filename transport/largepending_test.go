package transport_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestLargePendingMessagesCountsThoseWaitingForAGrant: the large lane's
// writer takes every queued message at once, to ask its receiver for
// room; PendingMessages counted the queue alone, so it read 0 while
// messages waited for their grants, PendingBytes holding their bytes
// meanwhile (and so did internode.queue.pending_messages): a receiver
// out of room showed as a sender with nothing to send. They count until
// written in full, as PendingBytes does.
func TestLargePendingMessagesCountsThoseWaitingForAGrant(t *testing.T) {
	const size = 1 << 20
	reader := metric.NewManualReader()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
		if i == 1 { // room for one message at a time
			cfg.Memory.MaxMessageSize = size + size/4
			cfg.Memory.Inbound = transport.Limits{PerConnection: size + size/2, PerPeer: size + size/2, Node: size + size/2}
		}
	})
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil, nil
	}))
	large := func() transport.ConnStats { return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Large) }

	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbLarge, make([]byte, size)))
	within(t, started, 10*time.Second, "the first message's handler, holding the receiver's room")
	waitFor(t, 10*time.Second, "the first message written", func() bool { return large().MessagesSent == 1 })

	const waiting = 3
	for range waiting {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbLarge, make([]byte, size)))
	}
	waitFor(t, 10*time.Second, "the messages taken by the writer", func() bool { return large().PendingBytes >= waiting*size })
	// Each has been asked for (begun) or waits to be, for room its
	// receiver does not have: none is written, so all are pending.
	assert.Equal(t, uint64(waiting), large().PendingMessages, "messages waiting for their grants")
	assert.Equal(t, int64(waiting), sumWhere(collect(t, reader)["internode.queue.pending_messages"], "peer", "n2", "lane", "large"))

	releaseAll()
	waitFor(t, 10*time.Second, "all written", func() bool { return large().MessagesSent == 1+waiting })
	waitFor(t, 10*time.Second, "nothing pending", func() bool {
		st := large()
		return st.PendingMessages == 0 && st.PendingBytes == 0
	})
}
