package transport_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	otelmetric "go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// taggedProvider wraps a provider with a slice: a type that cannot be
// compared.
type taggedProvider struct {
	otelmetric.MeterProvider
	tags []string
}

// forwardingProvider wraps any provider by value: a comparable type,
// whose value is comparable only if the provider it holds is.
type forwardingProvider struct {
	otelmetric.MeterProvider
}

// TestAProviderHoldingAnUncomparableValueDoesNotPanic: keyFor asks
// whether the provider's type is comparable, but a struct with an
// interface field is, whatever the field holds; the telemetryKey made of
// it then panics as a sync.Map key ("hash of unhashable type"), and New
// panics for an ordinary wrapper of a wrapper.
func TestAProviderHoldingAnUncomparableValueDoesNotPanic(t *testing.T) {
	reader := metric.NewManualReader()
	sdk := metric.NewMeterProvider(metric.WithReader(reader))
	mp := forwardingProvider{taggedProvider{sdk, []string{"tier=db"}}}
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = "n1", "test", "127.0.0.1:0"
	cfg.Membership = cluster.NewStatic(cluster.Member{ID: "ghost", Addr: "127.0.0.1:1"})
	cfg.Telemetry.Logger = quietLogger
	cfg.Telemetry.MeterProvider = mp
	require.NotPanics(t, func() {
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		_ = tr.Close()
	})
}
