package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/transport"
)

// TestARestartedNodeIsNotAddedToItsFinalFigures: a node closed and
// started again on the same provider (transporttest's Restart, a process
// that rebuilds its transport) reports under the same scope, and the same
// series, as before. The closed transport's counters stay registered
// until the next collection, so that collection observes the old
// transport's final figures and the new one's, and the SDK adds them up:
// the series reads a value neither transport ever counted (5 + 2), then
// falls to the new one's alone, which Prometheus reads as a reset and
// counts the new transport's messages twice.
func TestARestartedNodeIsNotAddedToItsFinalFigures(t *testing.T) {
	reader := metric.NewManualReader()
	provider := metric.NewMeterProvider(metric.WithReader(reader))
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Telemetry.MeterProvider = provider
		}
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	sent := func() int64 {
		return sumWhere(collect(t, reader)["internode.messages.sent"], "peer", string(c.ID(1)))
	}
	for range 5 {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
		require.NoError(t, err)
	}
	waitFor(t, 5*time.Second, "5 counted sent", func() bool { return c.Nodes[0].Stats().Total().MessagesSent == 5 })
	require.Equal(t, int64(5), sent())

	again, err := c.Restart(0)
	require.NoError(t, err)
	for range 2 {
		_, err := again.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
		require.NoError(t, err)
	}
	waitFor(t, 5*time.Second, "2 counted sent", func() bool { return again.Stats().Total().MessagesSent == 2 })
	first := sent()
	assert.LessOrEqual(t, first, int64(5), "the first collection after the restart: the old transport's final figure or the new one's, not their sum")
	// Then, once the old registration is gone (its Unregister runs on a
	// goroutine of its own), the new transport's alone.
	waitFor(t, 5*time.Second, "the new transport's figure alone", func() bool { return sent() == 2 })
}

// TestCloseKeepsTheFinalFiguresWhenViewsDropTheRequestDuration: a
// provider with a reader whose views drop internode.request.duration (its
// series per verb are the costly ones) collects every counter, but Close
// takes request.duration's Enabled as "nothing collects" and unregisters
// the counters at once: the messages Close failed never reach the
// metrics, as before 4ad570a, though Close's doc promises them to the
// first collection after it whenever the provider has a reader.
func TestCloseKeepsTheFinalFiguresWhenViewsDropTheRequestDuration(t *testing.T) {
	reader := metric.NewManualReader()
	drop := metric.NewView(metric.Instrument{Name: "internode.request.duration"},
		metric.Stream{Aggregation: metric.AggregationDrop{}})
	provider := metric.NewMeterProvider(metric.WithReader(reader), metric.WithView(drop))
	tr := ghostNode(t, "n1", provider)
	const queued = 3
	for range queued {
		require.NoError(t, tr.Send(context.Background(), "ghost", verbData, []byte("x")))
	}
	collect(t, reader) // the reader collects while the node runs
	require.NoError(t, tr.Close())
	dropped := sumWhere(collect(t, reader)["internode.messages.dropped"], "peer", "ghost", "reason", "closed", "direction", "out")
	assert.Equal(t, int64(queued), dropped, "the collection after Close reports what Close failed")
}
