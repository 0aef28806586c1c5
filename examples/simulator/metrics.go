package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
)

// metricsServer serves the transports' OpenTelemetry metrics in the
// Prometheus format on -metrics-addr, at /metrics. Each node has its own
// MeterProvider, kept across its restarts, whose series carry a node label.
// The process's own metrics, which no node label fits, come from one more
// provider: the Go runtime's (go_goroutine_count, go_memory_used_bytes,
// go_memory_gc_goal_bytes …, from the OpenTelemetry runtime
// instrumentation) without a node label, and the host's
// internode_kernel_* counters, which every transport reports alike, from
// the first node's provider only.
type metricsServer struct {
	registry  *prometheus.Registry
	process   *sdkmetric.MeterProvider // the Go runtime's metrics
	providers []*sdkmetric.MeterProvider
	ln        net.Listener
	mux       *http.ServeMux
	srv       *http.Server
	done      chan struct{} // closed when Serve returns; nil until serve
}

// startMetrics listens on addr; nil if addr is empty. Call serve once the
// nodes' providers exist: the Prometheus exporter is not safe to scrape
// while it is being created.
func startMetrics(addr string, out io.Writer) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	m := &metricsServer{registry: prometheus.NewRegistry(), ln: ln}
	exporter, err := otelprom.New(otelprom.WithRegisterer(m.registry), otelprom.WithoutTargetInfo())
	if err == nil {
		m.process = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
		err = runtime.Start(runtime.WithMeterProvider(m.process))
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("runtime metrics: %w", err), m.close())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	m.mux = mux
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(out, "metrics: http://%s/metrics\n", ln.Addr())
	return m, nil
}

// serve starts answering scrapes, until close.
func (m *metricsServer) serve() {
	if m == nil {
		return
	}
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		m.srv.Serve(m.ln) // returns when closed
	}()
}

// provider returns a MeterProvider for node; nil when metrics are off (the
// transport then uses its default, a no-op).
func (m *metricsServer) provider(node cluster.NodeID) (metric.MeterProvider, error) {
	if m == nil {
		return nil, nil
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(
		prometheus.WrapRegistererWith(prometheus.Labels{"node": string(node)}, m.registry)))
	if err != nil {
		return nil, err
	}
	options := []sdkmetric.Option{sdkmetric.WithReader(exporter)}
	if len(m.providers) > 0 {
		options = append(options, sdkmetric.WithView(dropKernelCounters))
	}
	p := sdkmetric.NewMeterProvider(options...)
	m.providers = append(m.providers, p)
	return p, nil
}

// dropKernelCounters keeps a provider from exporting the host-wide
// internode.kernel.* counters, which the first node's provider exports.
var dropKernelCounters = sdkmetric.NewView(sdkmetric.Instrument{Name: "internode.kernel.*"},
	sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}})

func (m *metricsServer) close() error {
	if m == nil {
		return nil
	}
	var err error
	if m.done == nil {
		err = m.ln.Close()
	} else {
		err = m.srv.Close()
		<-m.done
	}
	for _, p := range m.providers {
		err = errors.Join(err, p.Shutdown(context.Background()))
	}
	if m.process != nil {
		err = errors.Join(err, m.process.Shutdown(context.Background()))
	}
	return err
}
