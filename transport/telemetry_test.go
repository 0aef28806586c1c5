package transport_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	otelmetric "go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/internode/internode/internal/kernelstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// collect reads every metric of reader into name → data.
func collect(t *testing.T, reader *metric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sumWhere adds the data points of an int64 sum or gauge whose attributes
// include every key=value given.
func sumWhere(data metricdata.Aggregation, kv ...string) int64 {
	var points []metricdata.DataPoint[int64]
	switch d := data.(type) {
	case metricdata.Sum[int64]:
		points = d.DataPoints
	case metricdata.Gauge[int64]:
		points = d.DataPoints
	}
	var total int64
	for _, p := range points {
		if hasAttributes(p.Attributes, kv...) {
			total += p.Value
		}
	}
	return total
}

// hasAttributes reports whether set holds every key=value given.
func hasAttributes(set attribute.Set, kv ...string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if v, ok := set.Value(attributeKey(kv[i])); !ok || v.String() != kv[i+1] {
			return false
		}
	}
	return true
}

func TestMetricsFollowTheMessages(t *testing.T) {
	readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
	})
	release := newGate()
	defer release.open()
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, release.wait(ctx)
	}))
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })

	// The connection is up, so that the message below is written within
	// its budget, not after a dial.
	ping := func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("ping"))
		require.NoError(t, err)
	}
	for range 49 {
		ping()
	}
	// One message that expires behind a stalled handler. The receiver's
	// deadline for it is its arrival there plus what was left of its
	// budget when it was written: later than the sender's by the transit
	// time. It must pass before the stalled handler is released (after,
	// the message is handed to its handler, received, for good), so the
	// wait is for the message's arrival, and a whole budget after it.
	const budget = 10 * time.Millisecond
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("stall")))
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, []byte("expires")))
	waitFor(t, 5*time.Second, "both written", func() bool { return c.Nodes[0].Stats().Total().MessagesSent == 49+2 })
	// A request written after both on the same connection is read after
	// them: once it is answered, the receiver has read "expires" and
	// queued it behind the stalled handler (one-way messages run in
	// order; requests, concurrently, do not wait).
	ping()
	arrived := time.Now() // "expires" arrived before this
	// Its receiver's deadline is at most a budget after its arrival.
	<-time.After(time.Until(arrived.Add(budget)))
	release.open()
	waitFor(t, 5*time.Second, "expiry counted", func() bool {
		return c.Nodes[1].Stats().Total().DroppedInbound[transport.ReasonExpired] == 1
	})

	sender, receiver := collect(t, readers[0]), collect(t, readers[1])
	assert.Equal(t, int64(52), sumWhere(sender["internode.messages.sent"], "peer", "n2"))
	assert.Equal(t, int64(50), sumWhere(sender["internode.messages.received"], "peer", "n2"), "the responses")
	assert.Equal(t, int64(51), sumWhere(receiver["internode.messages.received"], "peer", "n1", "lane", "small"))
	assert.Equal(t, int64(1), sumWhere(receiver["internode.messages.dropped"], "reason", "expired", "direction", "in"))
	assert.Positive(t, sumWhere(sender["internode.connections.opened"], "peer", "n2"))
	batches, ok := sender["internode.coalesce.batch_messages"].(metricdata.Histogram[int64])
	require.True(t, ok)
	var writes uint64
	for _, p := range batches.DataPoints {
		writes += p.Count
	}
	assert.Positive(t, writes)
	durations, ok := sender["internode.request.duration"].(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, durations.DataPoints, 1)
	assert.Equal(t, uint64(50), durations.DataPoints[0].Count)
	v, _ := durations.DataPoints[0].Attributes.Value("verb")
	assert.Equal(t, "10", v.String())
	for _, name := range []string{"internode.kernel.tcp_rcv_collapsed", "internode.kernel.softnet_time_squeeze"} {
		assert.Contains(t, sender, name, "kernel counters are observed on Linux")
	}
}

// stalledReceiver is n1 flooding n2, whose handler waits for release and
// whose reader has stopped (256 KiB of inbound capacity): it returns once
// n1 has written 1 MiB, the rest waiting in the two sockets' queues. Each
// node's metrics are read through its reader.
func stalledReceiver(t *testing.T) (c *transporttest.Cluster, readers []*metric.ManualReader, release *gate) {
	readers = []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
	c = newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.MaxMessageSize = 64 << 10
		// A fixed receive buffer: grown by autotuning while the receiver
		// still read, it could take the whole backlog and leave the
		// sender's socket none.
		cfg.Lanes.Sockets[routing.Small].ReceiveBuffer = 64 << 10
		// No bound on the sender's unsent bytes: the backlog is to wait
		// in the sockets, whose queues these tests measure.
		cfg.Lanes.Sockets[routing.Small].NotSentLowat = -1
	})
	release = newGate()
	t.Cleanup(release.open)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, release.wait(ctx)
	}))
	payload := make([]byte, 16<<10)
	for {
		if err := c.Nodes[0].Send(context.Background(), c.ID(1), verbData, payload); err != nil {
			require.ErrorIs(t, err, transport.ErrOverloaded)
			break // the sender's queue is full
		}
	}
	waitFor(t, 5*time.Second, "the receiver paused", func() bool { return c.Nodes[1].Stats().Total().Throttled > 0 })
	// The writer goes on writing the queue into the socket: once it wrote
	// far more than the receiver holds (256 KiB, and a frame it reads
	// into), the rest waits in the two sockets' queues.
	waitFor(t, 5*time.Second, "the sender wrote 1 MiB", func() bool {
		return c.Nodes[0].Stats().Total().BytesSent >= 1<<20
	})
	return c, readers, release
}

func TestSocketPeaksRiseWhenTheReceiverStopsReading(t *testing.T) {
	c, readers, release := stalledReceiver(t)
	sendPeak := sumWhere(collect(t, readers[0])["internode.socket.send_queue_peak_bytes"], "peer", "n2", "lane", "small")
	// Reading resumes: the first read finds the bytes that piled up. The
	// receiver read about 16 messages (its 256 KiB) before it paused, and
	// hands them to the handler first, so the wait is for 32 more than
	// were handed over before the release: some read after it.
	before := c.Nodes[1].Stats().Total().MessagesReceived
	release.open()
	waitFor(t, 10*time.Second, "the receiver resumed", func() bool {
		return c.Nodes[1].Stats().Total().MessagesReceived > before+32
	})
	recvPeak := sumWhere(collect(t, readers[1])["internode.socket.recv_queue_peak_bytes"], "peer", "n1", "lane", "small")
	t.Logf("send queue peak %d bytes, receive queue peak %d bytes", sendPeak, recvPeak)
	assert.Greater(t, sendPeak, int64(64<<10), "unsent bytes pile up in the sender's socket")
	assert.Positive(t, recvPeak, "unread bytes wait in the receiver's socket")
	assert.GreaterOrEqual(t, c.Nodes[0].Stats().Total().SendQueueMax, sendPeak, "Stats keeps the maximum")
	assert.Positive(t, c.Nodes[1].Stats().Total().RecvQueueMax)
}

func TestTraceSpansBothNodes(t *testing.T) {
	c, recorder, tp := tracedCluster(t, 2, nil)
	seen := make(chan trace.SpanContext, 1)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		seen <- trace.SpanContextFromContext(ctx)
		return nil, nil
	}))
	ctx, root := tp.Tracer("test").Start(context.Background(), "write")
	_, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, nil)
	require.NoError(t, err)
	root.End()
	remote := <-seen
	assert.Equal(t, root.SpanContext().TraceID(), remote.TraceID(), "one trace across both nodes")

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range recorder.Ended() {
		spans[s.Name()] = s
	}
	require.Contains(t, spans, "internode.request")
	require.Contains(t, spans, "internode.handle")
	client, server := spans["internode.request"], spans["internode.handle"]
	assert.Equal(t, trace.SpanKindClient, client.SpanKind())
	assert.Equal(t, trace.SpanKindServer, server.SpanKind())
	assert.Equal(t, client.SpanContext().SpanID(), server.Parent().SpanID(), "the handler's span is the request span's child")
	assert.Equal(t, remote.SpanID(), server.SpanContext().SpanID())
}

// TestRequestPassesItsTraceOnWithoutATracer: with no tracer behind the
// provider, requests skip their spans (TestRequestAllocations counts
// it), except those whose context carries a trace: that trace still
// reaches the peer's handler.
func TestRequestPassesItsTraceOnWithoutATracer(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Telemetry.TracerProvider = tracenoop.NewTracerProvider() })
	seen := make(chan trace.SpanContext, 1)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		seen <- trace.SpanContextFromContext(ctx)
		return nil, nil
	}))
	// A request without a trace: the tracer makes a span with nothing
	// behind it, so the requests after it skip theirs.
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.NoError(t, err)
	assert.False(t, (<-seen).IsValid())

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(ctxTimeout(t, 5*time.Second), sc)
	_, err = c.Nodes[0].Request(ctx, c.ID(1), verbEcho, nil)
	require.NoError(t, err)
	assert.Equal(t, sc.TraceID(), (<-seen).TraceID(), "the caller's trace reached the handler")
}

// TestRequestSpansFollowALateTracerProvider: requests that skip their
// spans while the provider has nothing behind it try again, and record
// spans once an SDK is behind it (as otel's global provider delegates to
// one set after the transport started).
func TestRequestSpansFollowALateTracerProvider(t *testing.T) {
	tp := &switchingProvider{}
	tp.set(tracenoop.NewTracerProvider())
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Telemetry.TracerProvider = tp })
	transport.SetSpanlessRecheck(c.Nodes[0], 20*time.Millisecond)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return nil, nil })
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.NoError(t, err)

	recorder := tracetest.NewSpanRecorder()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer sdk.Shutdown(context.Background())
	tp.set(sdk)
	waitFor(t, 10*time.Second, "a request span once the SDK is behind the provider", func() bool {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
		require.NoError(t, err)
		for _, s := range recorder.Ended() {
			if s.Name() == "internode.request" {
				return true
			}
		}
		return false
	})
}

// switchingProvider hands out tracers that start their spans with the
// provider it holds at the time, as otel's global one does once it
// delegates.
type switchingProvider struct {
	embedded.TracerProvider
	to atomic.Pointer[trace.TracerProvider]
}

func (p *switchingProvider) set(tp trace.TracerProvider) { p.to.Store(&tp) }

func (p *switchingProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return switchingTracer{p: p, name: name}
}

type switchingTracer struct {
	embedded.Tracer
	p    *switchingProvider
	name string
}

func (t switchingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return (*t.p.to.Load()).Tracer(t.name).Start(ctx, name, opts...)
}

func TestPrometheusEndpoint(t *testing.T) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	require.NoError(t, err)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(exporter))
		}
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.NoError(t, err)
	srv := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // no idle goroutines for goleak
	scrape := func() (string, error) {
		resp, err := client.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	// The writer records a write's batch after the write returns, which
	// can be after the response has arrived, and counts the write (and
	// measures its socket) just before. A scrape reads the counters first
	// and the batches last, so one that ran while the writer did can have
	// the batch without the rest: the scrape after the one that first had
	// the batch has everything the write recorded.
	waitFor(t, 5*time.Second, "the request's write recorded", func() bool {
		text, err := scrape()
		return err == nil && strings.Contains(text, "internode_coalesce_batch_messages")
	})
	text, err := scrape()
	require.NoError(t, err)
	for _, name := range []string{
		"internode_messages_sent", "internode_messages_received", "internode_bytes_sent",
		"internode_bytes_received", "internode_queue_pending_messages", "internode_queue_pending_bytes",
		"internode_coalesce_batch_messages", "internode_coalesce_wait", "internode_request_duration",
		"internode_connections_opened", "internode_socket_send_queue_peak_bytes", "internode_kernel_tcp_rcv_collapsed",
	} {
		assert.True(t, strings.Contains(text, name), "scrape has %s", name)
	}
	// The request took more than 50 µs and less than 10 s: the buckets
	// that say so exist.
	for _, bucket := range []string{`internode_request_duration_seconds_bucket{`, `le="5e-05"`, `le="0.00015"`, `le="10"`} {
		assert.Contains(t, text, bucket)
	}
}

func attributeKey(s string) attribute.Key { return attribute.Key(s) }

// kernelCounters are the host-wide counters every transport's
// MeterProvider carries once.
var kernelCounters = []string{
	"internode.kernel.tcp_rcv_collapsed", "internode.kernel.tcp_rcv_pruned", "internode.kernel.tcp_ofo_pruned",
	"internode.kernel.softnet_time_squeeze", "internode.kernel.softnet_dropped",
}

// kernelSeries returns each kernel counter's data points' values.
func kernelSeries(t *testing.T, reader *metric.ManualReader) map[string][]int64 {
	t.Helper()
	got := collect(t, reader)
	out := map[string][]int64{}
	for _, name := range kernelCounters {
		out[name] = []int64{}
		if sum, ok := got[name].(metricdata.Sum[int64]); ok {
			assert.True(t, sum.IsMonotonic, name)
			for _, p := range sum.DataPoints {
				assert.Zero(t, p.Attributes.Len(), "%s is the host's, not a peer's or a lane's", name)
				out[name] = append(out[name], p.Value)
			}
		}
	}
	return out
}

func TestKernelCountersOncePerMeterProvider(t *testing.T) {
	defer transport.SetKernelCounters(kernelstat.Counters{
		RcvCollapsed: 1, RcvPruned: 2, OfoPruned: 3, SoftnetTimeSqueeze: 4, SoftnetDropped: 5,
	})()
	once := map[string][]int64{
		"internode.kernel.tcp_rcv_collapsed": {1}, "internode.kernel.tcp_rcv_pruned": {2},
		"internode.kernel.tcp_ofo_pruned": {3}, "internode.kernel.softnet_time_squeeze": {4},
		"internode.kernel.softnet_dropped": {5},
	}
	none := map[string][]int64{}
	for _, name := range kernelCounters {
		none[name] = []int64{}
	}
	shared := metric.NewManualReader()
	provider := metric.NewMeterProvider(metric.WithReader(shared))
	own := metric.NewManualReader()
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = provider
		if i == 2 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(own))
		}
	})
	assert.Equal(t, once, kernelSeries(t, shared), "two transports, one provider: each counter once, not added twice")
	assert.Equal(t, once, kernelSeries(t, own), "a transport with a provider of its own has its own")

	require.NoError(t, c.Nodes[0].Close())
	assert.Equal(t, once, kernelSeries(t, shared), "the other transport keeps them")
	require.NoError(t, c.Nodes[0].Close(), "closing twice gives up one share, once")
	assert.Equal(t, once, kernelSeries(t, shared))

	require.NoError(t, c.Nodes[1].Close())
	assert.Equal(t, none, kernelSeries(t, shared), "the last transport on the provider unregisters them")
	assert.Equal(t, once, kernelSeries(t, own))

	// A transport that starts on the provider again registers them again.
	_, err := c.Restart(0)
	require.NoError(t, err)
	assert.Equal(t, once, kernelSeries(t, shared))
}

// unhashableProvider is a MeterProvider that cannot be a map key.
type unhashableProvider struct {
	otelmetric.MeterProvider
	_ []int
}

// wrappedProvider is a comparable type, whose value may not be.
type wrappedProvider struct{ otelmetric.MeterProvider }

// A provider that cannot be compared cannot be shared: each transport
// registers the kernel counters for itself, and none panics.
func TestKernelCountersUnhashableProvider(t *testing.T) {
	defer transport.SetKernelCounters(kernelstat.Counters{SoftnetTimeSqueeze: 4})()
	reader := metric.NewManualReader()
	provider := wrappedProvider{unhashableProvider{MeterProvider: metric.NewMeterProvider(metric.WithReader(reader))}}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Telemetry.MeterProvider = provider })
	assert.Equal(t, []int64{8}, kernelSeries(t, reader)["internode.kernel.softnet_time_squeeze"], "one registration each")
	require.NoError(t, c.Nodes[0].Close())
	assert.Equal(t, []int64{4}, kernelSeries(t, reader)["internode.kernel.softnet_time_squeeze"])
}

// TestSendQueuePeakAfterTheConnectionDied: a send queue's peak starts
// each collection interval from its last reading, so that a writer
// blocked on a full queue still shows it; but when the connection died
// with a full queue, every later collection kept reporting the dead
// socket's backlog. A closed connection's queue now reads empty.
func TestSendQueuePeakAfterTheConnectionDied(t *testing.T) {
	c, readers, release := stalledReceiver(t)
	peak := func() int64 {
		return sumWhere(collect(t, readers[0])["internode.socket.send_queue_peak_bytes"], "peer", "n2", "lane", "small")
	}
	require.Greater(t, peak(), int64(64<<10))

	release.open()
	require.NoError(t, c.Nodes[1].Close()) // the peer dies
	waitFor(t, 10*time.Second, "the connection is gone", func() bool {
		for _, cs := range c.Nodes[0].Stats().Conns {
			if cs.Peer == c.ID(1) && cs.Lane == routing.Small {
				return !cs.Connected
			}
		}
		return false
	})
	_ = peak() // the interval in which the socket died may report its backlog
	assert.Zero(t, peak(), "no socket, yet the send queue's peak reads its backlog")
}

// tracedCluster starts n nodes, each tweaked by tweak (nil: none), whose
// spans go to the returned recorder through the returned provider.
func tracedCluster(t *testing.T, n int, tweak func(i int, cfg *transport.Config)) (*transporttest.Cluster, *tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) }) // after the nodes' own cleanup
	c := newCluster(t, n, func(i int, cfg *transport.Config) {
		cfg.Telemetry.TracerProvider = tp
		if tweak != nil {
			tweak(i, cfg)
		}
	})
	return c, recorder, tp
}
