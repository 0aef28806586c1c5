package transport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestRoutingCountsTheTraceContext: a message whose encoded size is
// above Lanes.LargeThreshold goes on the large lane (Config, doc.go), and
// the trace context its header carries is part of that size, as it is
// for a response (sent in parts above the threshold). A Send or Request
// was routed by its payload and a header without parameters, so one
// carrying a trace, of an encoded size up to 4 KiB above the threshold,
// went on the small lane.
func TestRoutingCountsTheTraceContext(t *testing.T) {
	const threshold = 4 << 10
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { cfg.Lanes.LargeThreshold = threshold })
	lanes := make(chan routing.Lane, 4)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		lanes <- m.Lane
		return nil, nil
	}))
	state, err := trace.ParseTraceState("vendor=" + strings.Repeat("v", 200))
	require.NoError(t, err)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: state, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(ctxTimeout(t, 5*time.Second), sc)
	// The header without its parameters and the payload fit within the
	// threshold; with the trace's parameters (some 280 bytes) they do not.
	payload := make([]byte, threshold-64)

	require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbEcho, payload))
	assert.Equal(t, routing.Large, within(t, lanes, 5*time.Second, "the message"), "Send of a message above the threshold")
	_, err = c.Nodes[0].Request(ctx, c.ID(1), verbEcho, payload)
	require.NoError(t, err)
	assert.Equal(t, routing.Large, within(t, lanes, 5*time.Second, "the request"), "Request of a message above the threshold")

	// Without a trace the same payload is a small message.
	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, payload))
	assert.Equal(t, routing.Small, within(t, lanes, 5*time.Second, "the message"), "Send of a message within the threshold")
}
