package transport_test

import (
	"context"
	"runtime"
	"testing"
	"weak"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// TestAClosedTransportIsNotKeptAfterItsProviderShutsDown: a transport
// closed on a provider whose reader does not collect at shutdown (a
// ManualReader, as the Prometheus exporter's pull reader) waits for a
// final collection that never comes. Its counters stayed registered on
// the provider, which is fine: they went with it. They are now also
// listed in a package-level map (closedAwaiting) that nothing empties,
// which keeps the closed transport, and the provider, for the life of
// the process: one per provider and node, an application or test suite
// that builds a provider per transport grows without bound.
func TestAClosedTransportIsNotKeptAfterItsProviderShutsDown(t *testing.T) {
	w := closeOnAShutProvider(t)
	for range 10 {
		runtime.GC()
		if w.Value() == nil {
			return
		}
	}
	t.Fatal("the closed transport is still reachable after its provider shut down and every reference of the test's went")
}

func closeOnAShutProvider(t *testing.T) weak.Pointer[transport.Transport] {
	reader := metric.NewManualReader()
	provider := metric.NewMeterProvider(metric.WithReader(reader))
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = "leaky", "test", "127.0.0.1:0"
	cfg.Membership = cluster.NewStatic(cluster.Member{ID: "ghost", Addr: "127.0.0.1:1"})
	cfg.Telemetry.Logger = quietLogger
	cfg.Telemetry.MeterProvider = provider
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	tr.Start()
	require.NoError(t, tr.Close())
	require.NoError(t, provider.Shutdown(context.Background()))
	return weak.Make(tr)
}
