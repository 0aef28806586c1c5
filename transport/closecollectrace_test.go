package transport_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestCloseDuringACollectionReturns: a provider whose views drop
// internode.request.duration has a reader but reads as one with none, so
// Close unregisters the counters itself, while a collection may be
// running their callback. The callback, seeing Close done, waited for
// Close's unregistering to finish, which waited for the collection's
// lock: Close hung for ever.
func TestCloseDuringACollectionReturns(t *testing.T) {
	for i := range 50 {
		reader := metric.NewManualReader()
		drop := metric.NewView(metric.Instrument{Name: "internode.request.duration"},
			metric.Stream{Aggregation: metric.AggregationDrop{}})
		provider := metric.NewMeterProvider(metric.WithReader(reader), metric.WithView(drop))
		tr := ghostNode(t, "n1", provider)
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			var rm metricdata.ResourceMetrics
			for !stop.Load() {
				_ = reader.Collect(context.Background(), &rm)
			}
		})
		done := make(chan struct{})
		go func() { _ = tr.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: Close still waits after 10 s, a collection running", i)
		}
		stop.Store(true)
		wg.Wait()
	}
}
