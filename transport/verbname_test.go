package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/transport"
)

// TestAHandledVerbIsReportedUnderItsName: a verb named once on a node —
// by Named at its first registration, or by NameVerb — is called by that
// name in the node's request metrics, errors and logs for as long as it
// runs. Its stage, though, took the name of the registration that made or
// last changed it, and a Handle without Named (a new bound, a handler
// swapped) gave it the verb's number: internode.stage.active, .queued and
// .wait, Stats.Stages and the handler's spans reported verb="200" while
// the node still called the verb "read" everywhere else, the stage's
// series cut short at the change. Likewise a verb named by NameVerb and
// then handled, and one handled and then named by NameVerb.
func TestAHandledVerbIsReportedUnderItsName(t *testing.T) {
	reader := metric.NewManualReader()
	c, recorder, tp := tracedCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
	})
	n := c.Nodes[1]
	h := transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return nil, nil })
	n.Handle(verbRead, h, transport.Named("read"))
	n.Handle(verbRead, h, transport.Concurrent(8)) // a new bound; the verb's name unchanged
	n.NameVerb(verbApply, "apply")
	n.Handle(verbApply, h)
	n.Handle(verbPing, h)
	n.NameVerb(verbPing, "ping")

	for _, verb := range []transport.Verb{verbRead, verbApply, verbPing} {
		ctx, root := tp.Tracer("test").Start(ctxTimeout(t, 5*time.Second), "call")
		_, err := c.Nodes[0].Request(ctx, c.ID(1), verb, nil)
		root.End()
		require.NoError(t, err)
	}

	assert.Equal(t, "read", stage(n, verbRead).Name, "Stats.Stages")
	assert.Equal(t, "apply", stage(n, verbApply).Name, "Stats.Stages")
	assert.Equal(t, "ping", stage(n, verbPing).Name, "Stats.Stages")
	data := collect(t, reader)
	for _, name := range []string{"internode.stage.active", "internode.stage.queued"} {
		g, ok := data[name].(metricdata.Gauge[int64])
		require.True(t, ok, name)
		var verbs []string
		for _, p := range g.DataPoints {
			v, _ := p.Attributes.Value("verb")
			verbs = append(verbs, v.AsString())
		}
		assert.ElementsMatch(t, []string{"read", "apply", "ping"}, verbs, name)
	}
	hist, ok := data["internode.stage.wait"].(metricdata.Histogram[float64])
	require.True(t, ok)
	var waited []string
	for _, p := range hist.DataPoints {
		v, _ := p.Attributes.Value("verb")
		waited = append(waited, v.AsString())
	}
	assert.ElementsMatch(t, []string{"read", "apply", "ping"}, waited, "internode.stage.wait")

	var handled []string
	waitFor(t, 5*time.Second, "the handlers' spans ended", func() bool {
		handled = handled[:0]
		for _, s := range recorder.Ended() {
			if s.Name() != "internode.handle" {
				continue
			}
			for _, kv := range s.Attributes() {
				if kv.Key == attribute.Key("internode.verb") {
					handled = append(handled, kv.Value.AsString())
				}
			}
		}
		return len(handled) == 3
	})
	assert.ElementsMatch(t, []string{"read", "apply", "ping"}, handled, "the handlers' spans")
}
