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
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
)

// metricsServer serves the transports' OpenTelemetry metrics in the
// Prometheus format on -metrics-addr, at /metrics. Each node has its own
// MeterProvider, kept across its restarts, whose series carry a node label.
type metricsServer struct {
	registry  *prometheus.Registry
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
	p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	m.providers = append(m.providers, p)
	return p, nil
}

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
	return err
}
