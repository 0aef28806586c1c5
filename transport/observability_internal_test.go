package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/cluster"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// TestLargeCancelWithEveryCodeIsCounted: a large message withdrawn after
// some of its parts arrived is dropped with the reason its sender gives,
// whatever it is. abandon took Reason 0 to mean "do not count", and 0 is
// ReasonOverloaded: a message withdrawn as overloaded was counted nowhere,
// neither received nor dropped.
func TestLargeCancelWithEveryCodeIsCounted(t *testing.T) {
	for _, code := range []wire.FailureCode{wire.FailureOverloaded, wire.FailureExpired, wire.FailureCanceled} {
		reason, _ := reasonOfCode(code)
		t.Run(reason.String(), func(t *testing.T) {
			r := newReaderRig(t, routing.Large, nil)
			r.tr.Handle(1, newRecorder(false))
			r.write(largeBegin(4, wire.Header{ID: 1, Verb: 1}, 300<<10))
			within(t, r.back, 5*time.Second, "the grant")
			r.write(anyFrame(wire.FrameLargeMore, 4, make([]byte, 100<<10)))
			r.write(anyFrame(wire.FrameLargeCancel, 4, wire.AppendFailure(nil, wire.Failure{Code: code})))
			eventually(t, func() bool { return r.used() == 0 }, "capacity given back")
			var dropped uint64
			for i := range r.in.dropped {
				dropped += r.in.dropped[i].Load()
			}
			assert.Equal(t, uint64(1), dropped+r.in.received.Load(), "one outcome")
			assert.Equal(t, uint64(1), r.in.dropped[reason].Load(), "dropped as %s", reason)
		})
	}
}

// TestADepartedEntryCountsWhatEndsAfterItIsFolded: a node that leaves
// keeps its counts in a departed entry, and a node that leaves again
// folds its earlier entry into the new one (addDeparted). What the
// earlier entry counts after that — here the response of a handler that
// was still running for the node when it first left, which fails with its
// connection — was counted on an entry no longer in Stats: the response
// ended in no outcome at all.
func TestADepartedEntryCountsWhatEndsAfterItIsFolded(t *testing.T) {
	static2 := cluster.NewStatic()
	n2 := startNode(t, "n2", static2, nil)
	started, gate := make(chan struct{}, 1), make(chan struct{})
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		started <- struct{}{}
		<-gate
		return []byte("late"), nil
	}))
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), nil)
	n1Member := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
	static2.Add(n1Member)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := n1.Request(ctx, "n2", 1, []byte("q"))
		done <- err
	}()
	within(t, started, 5*time.Second, "the handler")

	static2.Remove("n1") // n1 leaves while its request is being handled
	static2.Add(n1Member)
	require.NoError(t, n2.Send(context.Background(), "n1", 2, []byte("hello"))) // a new entry for n1
	eventually(t, func() bool { return n2.Stats().Total().MessagesSent > 0 }, "n2's message to n1 written")
	static2.Remove("n1") // n1 leaves again: its first entry folds into the second

	outcomes := func() uint64 {
		tot := n2.Stats().Total()
		return tot.MessagesSent + tot.DroppedTotal()
	}
	before := outcomes()
	close(gate) // the handler answers; its connection is gone
	<-done
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for deadline := time.After(5 * time.Second); outcomes() == before; {
		select {
		case <-tick.C:
			continue
		case <-deadline:
		}
		break
	}
	assert.Equal(t, before+1, outcomes(), "the late response is written or dropped, and counted")
	n2.forgetQuietStrangers() // the janitor: the first entry, quiet now, folds into the second
	n2.peersMu.RLock()
	departed := len(n2.departed)
	n2.peersMu.RUnlock()
	assert.Equal(t, 1, departed, "one entry for n1 once nothing of it runs")
	assert.Equal(t, before+1, outcomes(), "and its counts with it")
}

// TestCoalescingCountsSurviveAnIdleLane: a lane closed for being idle is
// dropped, its counters kept by the peer so that they never go back. Its
// coalescing strategy's counts (ConnStats.Coalescing: writes, messages,
// bytes, waits) went with it: Stats read zero once the lane was retired,
// and counted from zero on its successor.
func TestCoalescingCountsSurviveAnIdleLane(t *testing.T) {
	static := cluster.NewStatic()
	n2 := startNode(t, "n2", static, nil)
	got := make(chan struct{}, 16)
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		got <- struct{}{}
		return nil, nil
	}))
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}),
		func(c *Config) { c.Timeouts.Idle = 20 * time.Millisecond })
	static.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
	coalesced := func() (writes, messages uint64) {
		for _, cs := range n1.Stats().Conns {
			if cs.Peer == "n2" && cs.Lane == routing.Small {
				return cs.Coalescing.Writes, cs.Coalescing.Messages
			}
		}
		return 0, 0
	}
	send := func() {
		require.NoError(t, n1.Send(context.Background(), "n2", 1, []byte("x")))
		within(t, got, 5*time.Second, "the message")
	}
	send()
	send()
	eventually(t, func() bool { w, _ := coalesced(); return w >= 2 }, "two writes counted")
	writes, messages := coalesced()
	p := n1.peerStats("n2")
	eventually(t, func() bool { return p.lanes[routing.Small].Load() == nil }, "the idle lane retired")
	w, m := coalesced()
	assert.GreaterOrEqual(t, w, writes, "coalescing writes went backwards when the lane was retired")
	assert.GreaterOrEqual(t, m, messages, "coalescing messages went backwards when the lane was retired")
	send()
	eventually(t, func() bool { w, _ := coalesced(); return w != writes }, "the next write counted")
	w, _ = coalesced()
	assert.Equal(t, writes+1, w, "the successor lane counts on")
}

// TestLaneMetricsOfAStrangerThatJoinedCarryItsID: a node connected to
// this one before this node's membership knew it (AcceptUnknownPeers),
// then joined; a Send to it, made once Lookup knew it but before its
// Join event came, built the lane on the stranger's entry. The lane took
// the strangers' label for its batch and coalescing-wait histograms and
// kept it for as long as it lived: once the entry was promoted, Stats and
// the counters named the peer, the histograms of its writes did not.
func TestLaneMetricsOfAStrangerThatJoinedCarryItsID(t *testing.T) {
	n3 := startNode(t, "n3", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), nil)
	n3.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
	reader := sdkmetric.NewManualReader()
	static := cluster.NewStatic()
	n1 := startNode(t, "n1", deferredWatch{&hookedMembership{Static: static}}, func(c *Config) {
		c.Telemetry.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	p, err := n1.peerFor("n3", false) // n3 connected first: a stranger's entry
	require.NoError(t, err)
	static.Add(cluster.Member{ID: "n3", Addr: n3.Addr().String()}) // its Join event is on its way
	batches := func() map[string]uint64 {
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(context.Background(), &rm))
		out := map[string]uint64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if h, ok := m.Data.(metricdata.Histogram[int64]); ok && m.Name == "internode.coalesce.batch_messages" {
					for _, dp := range h.DataPoints {
						peer, _ := dp.Attributes.Value("peer")
						out[peer.AsString()] += dp.Count
					}
				}
			}
		}
		return out
	}
	require.NoError(t, n1.Send(context.Background(), "n3", 1, []byte("before")))
	require.Eventually(t, func() bool { return batches()[string(StrangersPeer)] == 1 }, 5*time.Second, time.Millisecond)

	n1.promote(p) // the Join came
	require.NoError(t, n1.Send(context.Background(), "n3", 1, []byte("after")))
	require.Eventually(t, func() bool {
		b := batches()
		return b[string(StrangersPeer)]+b["n3"] == 2
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, map[string]uint64{string(StrangersPeer): 1, "n3": 1}, batches(),
		"a member's writes recorded under the strangers' label")
}
