package transport_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// outcomes is one node's counters toward one peer, all lanes together.
type outcomes struct {
	sent, received, handlerErrors uint64
	dropped, droppedIn            [transport.NumReasons]uint64
}

func outcomesOf(st transport.Stats, peer string) outcomes {
	var o outcomes
	for _, c := range st.Conns {
		if string(c.Peer) != peer {
			continue
		}
		o.sent += c.MessagesSent
		o.received += c.MessagesReceived
		o.handlerErrors += c.HandlerErrors
		for r := range transport.NumReasons {
			o.dropped[r] += c.Dropped[r]
			o.droppedIn[r] += c.DroppedInbound[r]
		}
	}
	return o
}

func (o outcomes) minus(b outcomes) outcomes {
	d := outcomes{sent: o.sent - b.sent, received: o.received - b.received, handlerErrors: o.handlerErrors - b.handlerErrors}
	for r := range transport.NumReasons {
		d.dropped[r], d.droppedIn[r] = o.dropped[r]-b.dropped[r], o.droppedIn[r]-b.droppedIn[r]
	}
	return d
}

// metricsAgree checks that every per-connection counter in the node's
// metrics equals its Stats, series by series.
func metricsAgree(t *testing.T, node *transport.Transport, reader *metric.ManualReader) {
	t.Helper()
	st := node.Stats()
	got := collect(t, reader)
	for _, c := range st.Conns {
		kv := []string{"peer", string(c.Peer), "lane", c.Lane.String()}
		assert.Equal(t, int64(c.MessagesSent), sumWhere(got["internode.messages.sent"], kv...), "sent %v", kv)
		assert.Equal(t, int64(c.MessagesReceived), sumWhere(got["internode.messages.received"], kv...), "received %v", kv)
		assert.Equal(t, int64(c.BytesSent), sumWhere(got["internode.bytes.sent"], kv...), "bytes sent %v", kv)
		assert.Equal(t, int64(c.BytesReceived), sumWhere(got["internode.bytes.received"], kv...), "bytes received %v", kv)
		for r := range transport.NumReasons {
			reason := transport.Reason(r).String()
			assert.Equal(t, int64(c.Dropped[r]), sumWhere(got["internode.messages.dropped"], append(kv, "reason", reason, "direction", "out")...), "dropped out %s %v", reason, kv)
			assert.Equal(t, int64(c.DroppedInbound[r]), sumWhere(got["internode.messages.dropped"], append(kv, "reason", reason, "direction", "in")...), "dropped in %s %v", reason, kv)
		}
	}
	if sum, ok := got["internode.messages.sent"].(metricdata.Sum[int64]); ok {
		assert.True(t, sum.IsMonotonic)
	}
}

// TestEveryOutcomeCountedOnceEachSide drives outcomes between two nodes
// over TCP and checks each side's counters move by exactly one, and
// that the metrics say what Stats says.
func TestEveryOutcomeCountedOnceEachSide(t *testing.T) {
	readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
		cfg.Memory.MaxMessageSize = 1 << 20
		if i == 1 {
			cfg.Memory.MaxMessageSize = 64 << 10 // a rolling change: the receiver's limit is lower
		}
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	const (
		verbOK    transport.Verb = 200
		verbErr   transport.Verb = 201
		verbPanic transport.Verb = 202
		verbNone  transport.Verb = 203
	)
	n2.Handle(verbOK, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) { return nil, nil }))
	n2.Handle(verbErr, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, errors.New("no")
	}))
	n2.Handle(verbPanic, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) { panic("boom") }))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	type want struct{ s1, r2, s2, r1 outcomes } // n1 toward n2, n2 toward n1
	one := func(f func(*outcomes)) outcomes { var o outcomes; f(&o); return o }
	cases := []struct {
		name string
		do   func() error
		want want
	}{
		{"one-way delivered", func() error { return n1.Send(context.Background(), c.ID(1), verbOK, []byte("x")) },
			want{s1: one(func(o *outcomes) { o.sent = 1 }), r2: one(func(o *outcomes) { o.received = 1 })}},
		{"one-way unknown verb", func() error { return n1.Send(context.Background(), c.ID(1), verbNone, []byte("x")) },
			want{s1: one(func(o *outcomes) { o.sent = 1 }), r2: one(func(o *outcomes) { o.droppedIn[transport.ReasonUnknownVerb] = 1 })}},
		{"request unknown verb", func() error {
			_, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbNone, []byte("x"))
			return ignore(err, transport.ErrUnknownVerb)
		}, want{s1: one(func(o *outcomes) { o.sent, o.received = 1, 1 }), r2: one(func(o *outcomes) { o.droppedIn[transport.ReasonUnknownVerb], o.sent = 1, 1 })}},
		{"one-way handler error", func() error { return n1.Send(context.Background(), c.ID(1), verbErr, []byte("x")) },
			want{s1: one(func(o *outcomes) { o.sent = 1 }), r2: one(func(o *outcomes) { o.received, o.handlerErrors = 1, 1 })}},
		{"request handler panic", func() error {
			_, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbPanic, []byte("x"))
			return ignore(err, transport.ErrHandler)
		}, want{s1: one(func(o *outcomes) { o.sent, o.received = 1, 1 }), r2: one(func(o *outcomes) { o.received, o.sent = 1, 1 })}},
		{"too large for the sender", func() error {
			return ignore(n1.Send(context.Background(), c.ID(1), verbOK, make([]byte, 2<<20)), transport.ErrTooLarge)
		}, want{s1: one(func(o *outcomes) { o.dropped[transport.ReasonTooLarge] = 1 })}},
		{"too large for the receiver, small lane", func() error {
			// Above the receiver's limit, under the large-lane threshold? No:
			// 100 KiB goes on the large lane, refused at its header.
			return n1.Send(context.Background(), c.ID(1), verbOK, make([]byte, 100<<10))
		}, want{s1: one(func(o *outcomes) { o.dropped[transport.ReasonTooLarge] = 1 }), r2: one(func(o *outcomes) { o.droppedIn[transport.ReasonTooLarge] = 1 })}},
		{"canceled before queued", func() error {
			return ignore(n1.Send(canceled, c.ID(1), verbOK, []byte("x")), context.Canceled)
		}, want{s1: one(func(o *outcomes) { o.dropped[transport.ReasonCanceled] = 1 })}},
	}
	for _, tc := range cases {
		before := [4]outcomes{outcomesOf(n1.Stats(), "n2"), outcomesOf(n2.Stats(), "n1")}
		require.NoError(t, tc.do(), tc.name)
		w := tc.want
		wantS1, wantR2 := w.s1, w.r2
		// n1's and n2's views combine out and in: s1/r1 are n1's, r2/s2 n2's.
		merge := func(a, b outcomes) outcomes {
			a.sent += b.sent
			a.received += b.received
			a.handlerErrors += b.handlerErrors
			for r := range transport.NumReasons {
				a.dropped[r] += b.dropped[r]
				a.droppedIn[r] += b.droppedIn[r]
			}
			return a
		}
		want1, want2 := merge(wantS1, w.r1), merge(wantR2, w.s2)
		var got1, got2 outcomes
		ok := assert.Eventually(t, func() bool {
			got1 = outcomesOf(n1.Stats(), "n2").minus(before[0])
			got2 = outcomesOf(n2.Stats(), "n1").minus(before[1])
			return got1 == want1 && got2 == want2
		}, 5*time.Second, time.Millisecond, tc.name)
		if !ok {
			t.Logf("%s: n1 %+v, want %+v; n2 %+v, want %+v", tc.name, got1, want1, got2, want2)
		}
		metricsAgree(t, n1, readers[0])
		metricsAgree(t, n2, readers[1])
	}
	_ = fmt.Sprint
}

// ignore returns nil if err is target, else err (or an error saying it
// was expected and nil came).
func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("wanted %v, got nil", target)
	}
	return err
}

// TestOutcomesToAnUnreachablePeer: messages queued for a member that
// cannot be reached end expired, connection reset (a request, at the
// first failed dial), peer left, or closed: one each.
func TestOutcomesToAnUnreachablePeer(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 1, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
	})
	n := c.Nodes[0]
	dropped := func(peer string) [transport.NumReasons]uint64 { return outcomesOf(n.Stats(), peer).dropped }
	c.Members.Add(cluster.Member{ID: "down", Addr: "127.0.0.1:1"})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.NoError(t, n.Send(ctx, "down", verbData, []byte("expires")))
	_, err := n.Request(ctxTimeout(t, 5*time.Second), "down", verbEcho, []byte("q"))
	require.ErrorIs(t, err, transport.ErrConnectionReset)
	waitFor(t, 5*time.Second, "expired", func() bool { return dropped("down")[transport.ReasonExpired] == 1 })
	assert.Equal(t, uint64(1), dropped("down")[transport.ReasonConnectionReset])

	require.NoError(t, n.Send(context.Background(), "down", verbData, []byte("leaves")))
	c.Members.Remove("down")
	waitFor(t, 5*time.Second, "peer left", func() bool { return dropped("down")[transport.ReasonPeerLeft] == 1 })

	c.Members.Add(cluster.Member{ID: "down2", Addr: "127.0.0.1:1"})
	require.NoError(t, n.Send(context.Background(), "down2", verbData, []byte("closes")))
	metricsAgree(t, n, reader)
	require.NoError(t, n.Close())
	d := dropped("down2")
	assert.Equal(t, uint64(1), d[transport.ReasonClosed]+d[transport.ReasonExpired]+d[transport.ReasonConnectionReset], "%v", d)
	var total uint64
	for _, x := range dropped("down") {
		total += x
	}
	assert.Equal(t, uint64(3), total, "expired, reset, left: nothing else, nothing twice")
	assert.Zero(t, outcomesOf(n.Stats(), "down").sent)
}
