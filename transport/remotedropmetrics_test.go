package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/transport"
)

// TestHandlerErrorsAndRemoteDropsHaveMetrics: Stats counts the one-way
// messages whose handler failed (HandlerErrors) and the drops a peer
// reported for messages no call waited for (RemoteDropped), but no metric
// showed either: a node whose handlers failed every message, or whose
// one-way messages its peer rejected as overloaded, looked healthy to
// its dashboards. They are internode.messages.handler_errors and
// internode.messages.remote_dropped.
func TestHandlerErrorsAndRemoteDropsHaveMetrics(t *testing.T) {
	readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
		if i == 1 {
			cfg.Memory.Inbound = transport.Limits{PerConnection: 300 << 10, PerPeer: 300 << 10, Node: 300 << 10}
			cfg.Memory.MaxMessageSize = 200 << 10
			cfg.Memory.InboundOverload = transport.OverloadReject
		}
	})
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, errors.New("refused by the application")
	}))
	release := newGate()
	defer release.open()
	c.Nodes[1].Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, release.wait(ctx)
	}))

	const failing = 2
	for range failing {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
	}
	waitFor(t, 10*time.Second, "the handler errors counted", func() bool {
		return c.Nodes[1].Stats().Total().HandlerErrors == failing
	})
	assert.Equal(t, int64(failing), sumWhere(collect(t, readers[1])["internode.messages.handler_errors"], "peer", "n1", "lane", "small"))

	// 640 KiB of one-way messages behind a stalled handler, for 300 KiB
	// of room: the receiver rejects what does not fit.
	for range 20 {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbBlock, make([]byte, 32<<10)))
	}
	waitFor(t, 10*time.Second, "the peer's rejections counted", func() bool {
		return c.Nodes[0].Stats().Total().RemoteDropped[transport.ReasonOverloaded] > 0
	})
	release.open()
	waitFor(t, 10*time.Second, "every message accounted for", func() bool {
		st := c.Nodes[0].Stats().Total()
		return st.MessagesSent == failing+20 && st.PendingBytes == 0 &&
			c.Nodes[1].Stats().Total().MessagesReceived+st.RemoteDropped[transport.ReasonOverloaded] == failing+20
	})
	rejected := c.Nodes[0].Stats().Total().RemoteDropped[transport.ReasonOverloaded]
	assert.Equal(t, int64(rejected), sumWhere(collect(t, readers[0])["internode.messages.remote_dropped"], "peer", "n2", "reason", "overloaded"))
}
