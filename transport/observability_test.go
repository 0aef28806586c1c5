package transport_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestReaderHandlerContinuesTheTrace: a large request streamed to a
// ReaderHandler carries its trace context like any other message; its
// handler's context must continue the caller's trace, under an
// internode.handle span that is the request span's child.
func TestReaderHandlerContinuesTheTrace(t *testing.T) {
	c, recorder, tp := tracedCluster(t, 2, bigLimits(8<<20))
	seen := make(chan trace.SpanContext, 1)
	c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		_, err := io.Copy(io.Discard, body)
		seen <- trace.SpanContextFromContext(ctx)
		return nil, err
	}))
	ctx, root := tp.Tracer("test").Start(ctxTimeout(t, 10*time.Second), "write")
	_, err := c.Nodes[0].Request(ctx, c.ID(1), verbStream, make([]byte, 2<<20))
	require.NoError(t, err)
	root.End()
	remote := within(t, seen, 5*time.Second, "the handler")
	assert.Equal(t, root.SpanContext().TraceID(), remote.TraceID(), "the streamed handler continues the caller's trace")
	var handle int
	for _, s := range recorder.Ended() {
		if s.Name() == "internode.handle" {
			handle++
		}
	}
	assert.Equal(t, 1, handle, "an internode.handle span for the streamed request")
}

// bigTraceState is a valid W3C tracestate of 32 members (the most
// trace.TraceState holds) of 200-character values: about 6.6 KB, as an
// upstream service may hand on in its request's headers.
func bigTraceState(t *testing.T) trace.TraceState {
	var members []string
	for i := range 32 {
		members = append(members, fmt.Sprintf("vendor%02d=%s", i, strings.Repeat("v", 200)))
	}
	ts, err := trace.ParseTraceState(strings.Join(members, ","))
	require.NoError(t, err)
	return ts
}

// TestALargeTraceStateDoesNotPanicTheCaller: the trace context of the
// caller's context goes into the message's parameter block, which the
// wire format bounds at 4 KiB (wire.MaxParamsSize). A valid tracestate
// can be four times that; AppendHeader panics on a block above the bound,
// so Send and Request panicked in the caller's goroutine. The trace must
// still go on (its traceparent), and the message be sent.
func TestALargeTraceStateDoesNotPanicTheCaller(t *testing.T) {
	c, _, _ := tracedCluster(t, 2, nil)
	seen := make(chan trace.SpanContext, 2)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		seen <- trace.SpanContextFromContext(ctx)
		return nil, nil
	})
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: bigTraceState(t), Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(ctxTimeout(t, 5*time.Second), sc)

	require.NotPanics(t, func() {
		_, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("q"))
		assert.NoError(t, err)
	}, "Request")
	remote := within(t, seen, 5*time.Second, "the request's handler")
	assert.Equal(t, sc.TraceID(), remote.TraceID())
	assert.Positive(t, remote.TraceState().Len(), "the tracestate's first members, as many as fit")
	require.NotPanics(t, func() {
		assert.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbEcho, []byte("m")))
	}, "Send")
	assert.Equal(t, sc.TraceID(), within(t, seen, 5*time.Second, "the message's handler").TraceID())
}

// TestMalformedTraceParamsAreIgnored: a peer's traceparent or tracestate
// that is not W3C's is ignored: the message reaches its handler, with no
// trace, and nothing is counted as bad input or dropped.
func TestMalformedTraceParamsAreIgnored(t *testing.T) {
	c, _, _ := tracedCluster(t, 2, nil)
	seen := make(chan trace.SpanContext, 16)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		seen <- trace.SpanContextFromContext(ctx)
		return nil, nil
	}))
	valid := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	blocks := [][]byte{
		wire.AppendParam(nil, "traceparent", []byte("garbage")),
		wire.AppendParam(nil, "traceparent", []byte("00-00000000000000000000000000000000-0000000000000000-01")),
		wire.AppendParam(nil, "traceparent", []byte("ff-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")),
		wire.AppendParam(nil, "traceparent", []byte(strings.Repeat("0", 4000))),
		wire.AppendParam(nil, "traceparent", []byte{0xff, 0xfe, 0}),
		wire.AppendParam(wire.AppendParam(nil, "traceparent", []byte(valid)), "tracestate", []byte(strings.Repeat("=,", 1000))),
		wire.AppendParam(wire.AppendParam(nil, "traceparent", []byte("x")), "traceparent", []byte(valid)),
	}
	conn := dialAs(c.Nodes[1].Addr().String(), string(c.ID(0)), routing.Small)
	require.NotNil(t, conn)
	defer conn.Close()
	for i, params := range blocks {
		msg := wire.AppendHeader(nil, &wire.Header{ID: uint64(i + 1), Verb: uint32(verbEcho), Params: params, PayloadLength: 1})
		msg = append(msg, 'x')
		_, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...))
		require.NoError(t, err)
		sc := within(t, seen, 5*time.Second, fmt.Sprintf("message %d handled", i))
		t.Logf("block %d: handler's span context valid=%v", i, sc.IsValid())
	}
	st := c.Nodes[1].Stats()
	assert.Zero(t, st.InboundMalformed, "bad input")
	assert.Zero(t, st.Total().DroppedInbound, "dropped")
}

// TestRecvQueuePeakAfterTheConnectionDied: as for the send queue
// (TestSendQueuePeakAfterTheConnectionDied), a receive queue's peak
// starts each collection interval from its last reading; an inbound
// connection that died with a backlog in its socket (its reader paused
// for capacity, its peer gone) must not have every later collection
// report that dead socket's backlog.
func TestRecvQueuePeakAfterTheConnectionDied(t *testing.T) {
	c, readers, release := stalledReceiver(t)
	peak := func() int64 {
		return sumWhere(collect(t, readers[1])["internode.socket.recv_queue_peak_bytes"], "peer", "n1", "lane", "small")
	}
	t.Logf("receive queue peak while paused: %d bytes", peak())
	require.NoError(t, c.Nodes[0].Close()) // the sender dies; the receiver's reader is paused
	waitFor(t, 20*time.Second, "the receiver's inbound connection is gone", func() bool {
		return c.Nodes[1].Stats().InboundConnections == 0
	})
	release.open()
	_ = peak() // the interval in which the socket died may report its backlog
	assert.Zero(t, peak(), "no socket, yet the receive queue's peak reads its backlog")
}

// TestRefusalsSumToInboundRefused: Stats says the Refusals sum to
// InboundRefused. They were two counters added one after the other, and
// read one after the other: a snapshot taken while a handshake was being
// refused could see one and not yet the other.
func TestRefusalsSumToInboundRefused(t *testing.T) {
	c := newCluster(t, 1, nil)
	addr := c.Nodes[0].Addr().String()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if conn := dialAs(addr, "stranger", routing.Small); conn != nil { // refused: not a member
					conn.Close()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	deadline := time.After(5 * time.Second)
	for c.Nodes[0].Stats().InboundRefused < 3000 {
		st := c.Nodes[0].Stats()
		var sum uint64
		for _, n := range st.Refusals {
			sum += n
		}
		require.Equal(t, st.InboundRefused, sum, "the refusals by reason sum to InboundRefused")
		select {
		case <-deadline:
			return
		default:
		}
	}
}

// TestNodesSharingAMeterProviderKeepTheirSeriesApart: transports may share
// a MeterProvider (TelemetryConfig says how the kernel counters are then
// exported once). Every other series is a node's own, and must say whose:
// n1's and n2's counts of what they sent to n3 are two series, not one
// that adds them up or keeps either.
func TestNodesSharingAMeterProviderKeepTheirSeriesApart(t *testing.T) {
	reader := metric.NewManualReader()
	provider := metric.NewMeterProvider(metric.WithReader(reader))
	c := newCluster(t, 3, func(i int, cfg *transport.Config) { cfg.Telemetry.MeterProvider = provider })
	got := make(chan struct{}, 16)
	c.Nodes[2].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got <- struct{}{}
		return nil, nil
	}))
	for i, n := range map[int]int{0: 3, 1: 5} {
		for range n {
			require.NoError(t, c.Nodes[i].Send(context.Background(), c.ID(2), verbData, []byte("x")))
			within(t, got, 5*time.Second, "the message")
		}
		// The writer counts a write once it returned, which can be after
		// the handler ran.
		waitFor(t, 5*time.Second, "the writes counted", func() bool {
			return c.Nodes[i].Stats().Total().MessagesSent == uint64(n)
		})
	}
	// toN3 returns each series of messages sent to n3, keyed by its
	// scope and attributes.
	toN3 := func() map[string]int64 {
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(context.Background(), &rm))
		series := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != "internode.messages.sent" {
					continue
				}
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					if hasAttributes(p.Attributes, "peer", "n3") {
						series[sm.Scope.Attributes.Encoded(attribute.DefaultEncoder())+"/"+p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
					}
				}
			}
		}
		return series
	}
	before := toN3()
	var values []int64
	for _, v := range before {
		values = append(values, v)
	}
	assert.ElementsMatch(t, []int64{3, 5}, values, "n1's and n2's messages to n3, each its own series")
	require.NoError(t, c.Nodes[0].Close())
	for key, v := range toN3() {
		assert.GreaterOrEqual(t, v, before[key], "%s went backwards when one of the nodes closed", key)
	}
}

// TestAMessageAtTheOutboundLimitsIsSentWithALargeTraceState: outbound
// limits that Config accepts hold a message of MaxMessageSize with the
// largest header. A message queued for sending also holds its queue
// entry, which validate did not count: one of MaxMessageSize whose header
// the caller's trace context filled was refused with ErrOverloaded, as
// never fitting, by limits that Config had accepted.
func TestAMessageAtTheOutboundLimitsIsSentWithALargeTraceState(t *testing.T) {
	const maxMessage = 64 << 10
	// The least outbound limits Config accepts for maxMessage.
	at := int64(maxMessage + wire.MaxHeaderSize)
	for ; ; at++ {
		cfg := validConfig()
		cfg.Memory.MaxMessageSize = maxMessage
		cfg.Memory.Outbound = transport.Limits{PerConnection: at, PerPeer: at, Node: at}
		if cfg.Validate() == nil {
			break
		}
		require.Less(t, at, int64(maxMessage+2*wire.MaxHeaderSize), "limits accepted at all")
	}
	c, _, _ := tracedCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = maxMessage
		cfg.Memory.Outbound = transport.Limits{PerConnection: at, PerPeer: at, Node: at}
	})
	seen := make(chan int, 1)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		seen <- len(m.Payload)
		return nil, nil
	}))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: bigTraceState(t), Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(ctxTimeout(t, 5*time.Second), sc)
	require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbEcho, make([]byte, maxMessage)))
	assert.Equal(t, maxMessage, within(t, seen, 5*time.Second, "the message's handler"))
}
