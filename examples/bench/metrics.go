package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
)

// The internode systems (all but internode-nometrics) give each of their two
// transports an OpenTelemetry SDK MeterProvider, so that the bench pays for
// metrics as a user with metrics on would. Its reader is a ManualReader
// that nobody collects (recording costs what it costs; no export runs in
// the measured interval) or, with -metrics-addr, the OpenTelemetry
// Prometheus exporter, served over HTTP while the bench runs.

// metricsServer serves, at http://ADDR/metrics, the Prometheus text of the
// internode system running now: each system run registers its two
// transports' exporters, labelled node="a" and node="b", in a registry of
// its own, which the server swaps in for the run's duration (between runs
// it serves an empty registry).
//
// The process's own metrics are served throughout, without a node label:
// the Go runtime's (go_goroutine_count, go_memory_used_bytes …, from the
// OpenTelemetry runtime instrumentation), from a provider of their own, and
// the host's internode_kernel_* counters, which both transports would
// report alike, from node "a" only.
type metricsServer struct {
	current atomic.Pointer[prometheus.Registry]
	process *prometheus.Registry
	runtime *sdkmetric.MeterProvider // the Go runtime's metrics
	addr    net.Addr
	srv     *http.Server
	done    chan struct{}
}

// activeMetrics is the server of -metrics-addr, nil without it.
var activeMetrics atomic.Pointer[metricsServer]

// startMetrics listens on addr, serves until close and makes the internode
// systems export to it.
func startMetrics(addr string, out io.Writer) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	m := &metricsServer{addr: ln.Addr(), done: make(chan struct{}), process: prometheus.NewRegistry()}
	m.current.Store(prometheus.NewRegistry())
	exporter, err := otelprom.New(otelprom.WithRegisterer(m.process), otelprom.WithoutTargetInfo())
	if err == nil {
		m.runtime = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
		err = runtime.Start(runtime.WithMeterProvider(m.runtime))
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("runtime metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, req *http.Request) {
		gatherers := prometheus.Gatherers{m.process, m.current.Load()}
		promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{}).ServeHTTP(w, req)
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(m.done)
		_ = m.srv.Serve(ln) // returns once closed
	}()
	activeMetrics.Store(m)
	fmt.Fprintf(out, "metrics: serving Prometheus text at http://%s/metrics\n", ln.Addr())
	return m, nil
}

func (m *metricsServer) close() error {
	activeMetrics.CompareAndSwap(m, nil)
	err := m.srv.Close()
	<-m.done
	return errors.Join(err, m.runtime.Shutdown(context.Background()))
}

// systemMetrics are the meter providers of one internode system.
type systemMetrics struct {
	server    *metricsServer       // nil: ManualReaders
	registry  *prometheus.Registry // served while the system runs
	providers []*sdkmetric.MeterProvider
	readers   []*sdkmetric.ManualReader // without -metrics-addr
}

func newSystemMetrics() *systemMetrics {
	sm := &systemMetrics{server: activeMetrics.Load()}
	if sm.server != nil {
		sm.registry = prometheus.NewRegistry()
	}
	return sm
}

// provider returns a new MeterProvider for one node.
func (sm *systemMetrics) provider(node cluster.NodeID) (*sdkmetric.MeterProvider, error) {
	var reader sdkmetric.Reader
	if sm.server != nil {
		exporter, err := otelprom.New(otelprom.WithRegisterer(
			prometheus.WrapRegistererWith(prometheus.Labels{"node": string(node)}, sm.registry)))
		if err != nil {
			return nil, err
		}
		reader = exporter
	} else {
		mr := sdkmetric.NewManualReader()
		sm.readers = append(sm.readers, mr)
		reader = mr
	}
	options := []sdkmetric.Option{sdkmetric.WithReader(reader)}
	if len(sm.providers) > 0 {
		options = append(options, sdkmetric.WithView(dropKernelCounters))
	}
	p := sdkmetric.NewMeterProvider(options...)
	sm.providers = append(sm.providers, p)
	return p, nil
}

// dropKernelCounters keeps a provider from exporting the host-wide
// internode.kernel.* counters, which the first node's provider exports.
var dropKernelCounters = sdkmetric.NewView(sdkmetric.Instrument{Name: "internode.kernel.*"},
	sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}})

// serve makes the server, if any, serve this system's metrics.
func (sm *systemMetrics) serve() {
	if sm.server != nil {
		sm.server.current.Store(sm.registry)
	}
}

// unserve stops serving this system's metrics; the server serves an
// empty registry until the next system's serve.
func (sm *systemMetrics) unserve() {
	if sm.server != nil {
		sm.server.current.CompareAndSwap(sm.registry, prometheus.NewRegistry())
	}
}

// close stops serving this system's metrics and shuts its providers down.
func (sm *systemMetrics) close() error {
	sm.unserve()
	var err error
	for _, p := range sm.providers {
		err = errors.Join(err, p.Shutdown(context.Background()))
	}
	sm.providers = nil
	return err
}
