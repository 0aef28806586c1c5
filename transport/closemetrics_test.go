package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	otelmetric "go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// ghostNode is a transport named id whose one member, "ghost", cannot be
// reached: what it sends waits in the queue until Close fails it.
func ghostNode(t *testing.T, id string, mp otelmetric.MeterProvider) *transport.Transport {
	t.Helper()
	members := cluster.NewStatic(cluster.Member{ID: "ghost", Addr: "127.0.0.1:1"})
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr, cfg.Membership, cfg.Telemetry.Logger = cluster.NodeID(id), "test", "127.0.0.1:0", members, quietLogger
	cfg.Telemetry.MeterProvider = mp
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// TestCloseDropsReachTheLastCollection: the messages Close fails are
// counted dropped (closed) in Stats, and must reach the metrics too: the
// collection that follows Close, an exporter's last (a MeterProvider's
// Shutdown, a final scrape), is the only one that can report them. Close
// unregistered the metrics before it failed the messages, so no
// collection ever saw them, nor anything else counted since the one
// before. They now stay registered until that collection.
func TestCloseDropsReachTheLastCollection(t *testing.T) {
	reader := metric.NewManualReader()
	provider := metric.NewMeterProvider(metric.WithReader(reader))
	tr := ghostNode(t, "n1", provider)
	const queued = 3
	for range queued {
		require.NoError(t, tr.Send(context.Background(), "ghost", verbData, []byte("x")))
	}
	require.NoError(t, tr.Close())
	require.Equal(t, uint64(queued), tr.Stats().Total().Dropped[transport.ReasonClosed], "Stats counts them")

	dropped := func() int64 {
		return sumWhere(collect(t, reader)["internode.messages.dropped"], "peer", "ghost", "reason", "closed", "direction", "out")
	}
	assert.Equal(t, int64(queued), dropped(), "the collection after Close reports what Close failed")

	// Reported, they go: a closed transport is not kept for ever.
	waitFor(t, 5*time.Second, "the closed transport's metrics unregistered", func() bool { return dropped() == 0 })

	// A transport of the same node that starts on the provider again
	// reports its own figures alone.
	again := ghostNode(t, "n1", provider)
	require.NoError(t, again.Send(context.Background(), "ghost", verbData, []byte("x")))
	pending := sumWhere(collect(t, reader)["internode.queue.pending_messages"], "peer", "ghost")
	assert.Equal(t, int64(1), pending, "the new transport's queue alone")
	assert.Zero(t, dropped())
}

// countingProvider is a provider with nothing behind it, as the global
// one before the application sets one, that counts the callbacks
// registered and not unregistered.
type countingProvider struct {
	noop.MeterProvider
	registered *atomic.Int64
}

func (p countingProvider) Meter(string, ...otelmetric.MeterOption) otelmetric.Meter {
	return countingMeter{registered: p.registered}
}

type countingMeter struct {
	noop.Meter
	registered *atomic.Int64
}

func (m countingMeter) RegisterCallback(otelmetric.Callback, ...otelmetric.Observable) (otelmetric.Registration, error) {
	m.registered.Add(1)
	return &countedRegistration{registered: m.registered}, nil
}

type countedRegistration struct {
	noop.Registration
	registered *atomic.Int64
	once       atomic.Bool
}

func (r *countedRegistration) Unregister() error {
	if r.once.CompareAndSwap(false, true) {
		r.registered.Add(-1)
	}
	return nil
}

// TestCloseUnregistersWhatNothingCollects: the counters wait after Close
// for a collection to report them, but a provider with nothing behind it
// (the global one until the application sets one) never collects, and
// would keep every closed transport: Close unregisters everything then.
func TestCloseUnregistersWhatNothingCollects(t *testing.T) {
	var registered atomic.Int64
	tr := ghostNode(t, "n1", countingProvider{registered: &registered})
	require.Positive(t, registered.Load())
	require.NoError(t, tr.Send(context.Background(), "ghost", verbData, []byte("x")))
	require.NoError(t, tr.Close())
	assert.Zero(t, registered.Load(), "registrations left after Close")
}
