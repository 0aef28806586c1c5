package transport_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

const (
	verbRead  transport.Verb = 200
	verbPing  transport.Verb = 201
	verbApply transport.Verb = 202
)

// gauge tracks how many run at once, and the most that ever did.
type gauge struct{ now, peak atomic.Int64 }

func (g *gauge) enter() {
	n := g.now.Add(1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
}

func (g *gauge) leave() { g.now.Add(-1) }

// TestConcurrentStageServesSlowRequests: 200 requests at once to a
// handler that blocks (a disk read), in a Concurrent(64) stage: 64 run at
// once and no more, the rest wait their turn in the stage, and a ping to
// another verb is answered while all 64 are still running, not behind
// them. Once the reads return, every one is answered.
func TestConcurrentStageServesSlowRequests(t *testing.T) {
	c := newCluster(t, 2, nil)
	g := newGate()
	defer g.open()
	var running gauge
	c.Nodes[1].Handle(verbRead, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		running.enter()
		defer running.leave()
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		return m.Payload, nil
	}), transport.Concurrent(64), transport.Named("read"))
	handleAll(c, verbPing, func(_ context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbPing, nil) // connected
	require.NoError(t, err)

	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbRead, []byte("k"))
			assert.NoError(t, err)
		})
	}
	waitFor(t, 10*time.Second, "the stage full: 64 running, the rest queued", func() bool {
		s := stage(c.Nodes[1], verbRead)
		return running.now.Load() == 64 && s.Active == 64 && s.Queued == 200-64
	})
	_, err = c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbPing, []byte("ping"))
	require.NoError(t, err, "the ping does not wait behind the reads")
	assert.EqualValues(t, 64, running.now.Load(), "the reads still running when the ping was answered")
	g.open()
	wg.Wait()

	assert.EqualValues(t, 64, running.peak.Load(), "the stage's bound, reached and never passed")
	stages := c.Nodes[1].Stats().Stages
	i := slices.IndexFunc(stages, func(s transport.StageStats) bool { return s.Verb == verbRead })
	require.GreaterOrEqual(t, i, 0)
	assert.Equal(t, "read", stages[i].Name)
	assert.Equal(t, 64, stages[i].Limit)
	assert.Positive(t, stages[i].MaxWait, "requests waited for a handler")
}

// TestStageBoundHoldsAcrossPeers: a stage's bound holds node wide and its
// per-peer bound for each peer, with three peers pressing at once. The
// handlers block until the stage is full (8 running: three peers at 3
// each could run 9), then all run through.
func TestStageBoundHoldsAcrossPeers(t *testing.T) {
	c := newCluster(t, 4, nil)
	g := newGate()
	defer g.open()
	var all gauge
	per := make([]gauge, 4)
	c.Nodes[0].Handle(verbRead, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		p := &per[m.Payload[0]]
		all.enter()
		p.enter()
		defer all.leave()
		defer p.leave()
		return nil, g.wait(ctx)
	}), transport.Concurrent(8), transport.PerPeer(3))
	var wg sync.WaitGroup
	for from := 1; from <= 3; from++ {
		for range 40 {
			wg.Go(func() {
				_, err := c.Nodes[from].Request(ctxTimeout(t, 30*time.Second), c.ID(0), verbRead, []byte{byte(from)})
				assert.NoError(t, err)
			})
		}
	}
	waitFor(t, 10*time.Second, "the stage full", func() bool { return all.now.Load() == 8 })
	g.open()
	wg.Wait()
	assert.EqualValues(t, 8, all.peak.Load(), "node wide")
	for from := 1; from <= 3; from++ {
		assert.LessOrEqual(t, per[from].peak.Load(), int64(3), "for n%d", from+1)
		assert.Positive(t, per[from].peak.Load())
	}
}

// TestOrderedVerbKeepsOrderAndHoldsOnlyItself: an Ordered verb's messages
// reach its handler in the order they were sent, under load from other
// verbs on the same connection; while its handler is stalled, another
// verb's messages on that connection are still handled.
func TestOrderedVerbKeepsOrderAndHoldsOnlyItself(t *testing.T) {
	c := newCluster(t, 2, nil)
	g := newGate()
	defer g.open()
	var mu sync.Mutex
	var seen []uint64
	c.Nodes[1].Handle(verbApply, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		mu.Lock()
		seen = append(seen, binary.BigEndian.Uint64(m.Payload))
		mu.Unlock()
		return nil, nil
	}), transport.Ordered())
	var pings atomic.Int64
	c.Nodes[1].Handle(verbPing, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		pings.Add(1)
		return nil, nil
	}), transport.Concurrent(4))

	const n = 2000
	for i := range uint64(n) {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbApply, binary.BigEndian.AppendUint64(nil, i)))
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbPing, nil))
	}
	waitFor(t, 10*time.Second, "the other verb handled while the ordered one is stalled",
		func() bool { return pings.Load() == n })
	g.open()
	waitFor(t, 10*time.Second, "every ordered message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	mu.Lock()
	defer mu.Unlock()
	assert.True(t, slices.IsSorted(seen), "in the order sent")
}

// TestCancelReachesTheRemoteHandler: cancelling a Request's context
// cancels its handler's context on the peer — the request has no
// deadline, so only the cancel can end it — the handler's answer is not
// sent, and a request cancelled while it waits for a stage slot never
// starts. (How long the cancel takes is logged, not asserted: a loaded
// machine decides that.)
func TestCancelReachesTheRemoteHandler(t *testing.T) {
	c := newCluster(t, 2, nil)
	started := make(chan struct{}, 1)
	stopped := make(chan time.Time, 1)
	c.Nodes[1].Handle(verbRead, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		stopped <- time.Now()
		return nil, ctx.Err()
	}))
	var lags []time.Duration
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.Nodes[0].Request(ctx, c.ID(1), verbRead, nil)
			done <- err
		}()
		<-started
		at := time.Now()
		cancel()
		lags = append(lags, within(t, stopped, 10*time.Second, "the handler's context cancelled").Sub(at))
		assert.ErrorIs(t, <-done, context.Canceled)
	}
	slices.Sort(lags)
	t.Logf("cancel to handler stopped: %v", lags)

	// One slot, held: the next request waits, is cancelled, never starts.
	g := newGate()
	var ran atomic.Int64
	c.Nodes[1].Handle(verbApply, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		ran.Add(1)
		return nil, g.wait(ctx)
	}), transport.Concurrent(1))
	first := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbApply, nil)
		first <- err
	}()
	waitFor(t, 5*time.Second, "the slot taken", func() bool { return ran.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctx, c.ID(1), verbApply, nil)
		queued <- err
	}()
	waitFor(t, 5*time.Second, "the second waiting", func() bool { return stage(c.Nodes[1], verbApply).Queued == 1 })
	cancels := func() uint64 { return laneStats(t, c.Nodes[1], string(c.ID(0)), routing.Urgent).MessagesReceived }
	before := cancels()
	cancel()
	assert.ErrorIs(t, <-queued, context.Canceled)
	waitFor(t, 5*time.Second, "the cancel received", func() bool { return cancels() == before+1 })
	dropped := func() uint64 { return c.Nodes[1].Stats().Total().DroppedInbound[transport.ReasonCanceled] }
	// The slot still held: the cancelled request left the stage as its
	// cancel came, counted then.
	waitFor(t, 5*time.Second, "counted", func() bool { return dropped() == 1 })
	assert.Zero(t, stage(c.Nodes[1], verbApply).Queued, "withdrawn from the stage")
	g.open()
	require.NoError(t, <-first)
	assert.EqualValues(t, 1, ran.Load(), "the cancelled request never ran")
	assert.EqualValues(t, 1, dropped(), "counted once")
	assert.EqualValues(t, 1, stage(c.Nodes[1], verbApply).Started, "its turn never came")
}

// TestCancelReachesTheHandlersOfAFullNode: n1's and n3's requests run on
// n2 in handlers that wait for their context (a scan that runs until its
// caller gives up, a lock wait), and together hold n2's node-wide inbound
// limit; n3's next request waits for room. n1 then cancels its requests.
// Their cancels' frame needed inbound capacity before it could be read,
// and the only capacity was held by the handlers it would stop: the
// cancels waited, behind n3's paused reader, until the requests' deadlines
// ended the handlers. A small frame is now read first when it does not
// fit, and one of cancels only needs no capacity.
func TestCancelReachesTheHandlersOfAFullNode(t *testing.T) {
	const verbScan transport.Verb = 203
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		if i == 1 {
			cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 4 << 20, Node: 1 << 20}
		}
	})
	var started, stopped atomic.Int64
	c.Nodes[1].Handle(verbScan, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started.Add(1)
		<-ctx.Done()
		if m.From == c.ID(0) {
			stopped.Add(1)
		}
		return nil, ctx.Err()
	}))
	var wg sync.WaitGroup
	var cancels []context.CancelFunc
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
	}()
	request := func(from int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = c.Nodes[from].Request(ctx, c.ID(1), verbScan, make([]byte, 60<<10)) // a 64 KiB buffer each
		}()
	}
	for i := range 15 { // n1's 8, then n3's 7: n2's 1 MiB but for a few KiB
		request(map[bool]int{true: 0, false: 2}[i < 8])
		waitFor(t, 5*time.Second, "the request running", func() bool { return started.Load() == int64(i+1) })
	}
	request(2) // does not fit: n3's reader waits for room
	waitFor(t, 5*time.Second, "n3's reader waiting", func() bool { return c.Nodes[1].Stats().InboundWaiters == 1 })
	for _, cancel := range cancels[:8] {
		cancel()
	}
	waitFor(t, 10*time.Second, "n1's 8 cancelled handlers stopped", func() bool { return stopped.Load() == 8 })
	waitFor(t, 10*time.Second, "n3's request let in by the room they gave back", func() bool { return started.Load() == 16 })
}

// stage returns tr's stage of verb.
func stage(tr *transport.Transport, verb transport.Verb) transport.StageStats {
	for _, s := range tr.Stats().Stages {
		if s.Verb == verb {
			return s
		}
	}
	return transport.StageStats{}
}

// TestVerbNamesInErrors: a named verb's name is in its requests' errors.
func TestVerbNamesInErrors(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].Handle(verbRead, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return nil, errors.New("disk on fire")
	}), transport.Named("read"))
	c.Nodes[0].NameVerb(verbRead, "read")
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbRead, nil)
	var oe *transport.OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "read", oe.Verb)
	assert.Contains(t, err.Error(), "request read to n2")
}

// TestStageMetrics: a stage's active handlers and queue are observed by
// verb name, and the waits of the messages that found it full recorded.
func TestStageMetrics(t *testing.T) {
	reader := metric.NewManualReader()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
		}
	})
	g := newGate()
	defer g.open()
	c.Nodes[1].Handle(verbRead, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}), transport.Concurrent(1), transport.Named("read"))
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbRead, nil)
			assert.NoError(t, err)
		})
	}
	waitFor(t, 5*time.Second, "two waiting", func() bool { return stage(c.Nodes[1], verbRead).Queued == 2 })
	data := collect(t, reader)
	assert.EqualValues(t, 1, sumWhere(data["internode.stage.active"], "verb", "read"))
	assert.EqualValues(t, 2, sumWhere(data["internode.stage.queued"], "verb", "read"))
	g.open()
	wg.Wait()
	hist, ok := collect(t, reader)["internode.stage.wait"].(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, hist.DataPoints, 1)
	v, _ := hist.DataPoints[0].Attributes.Value("verb")
	assert.Equal(t, "read", v.AsString())
	assert.EqualValues(t, 3, hist.DataPoints[0].Count, "each one's wait")
}

// TestAVerbKeepsItsStageAcrossRegistrations: a verb's handler is replaced
// (Handle again, Concurrent(1)) while one of its requests runs and
// another waits. Each Handle made a stage of its own: the old one ran on
// unseen, Stats.Stages showed the new one's zeros (Started went back),
// and the new stage ran a second handler beside the old one's, past the
// bound. A removed verb's stage dropped out of Stats the same way.
func TestAVerbKeepsItsStageAcrossRegistrations(t *testing.T) {
	c := newCluster(t, 2, nil)
	g := newGate()
	defer g.open()
	var running gauge
	h := transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		running.enter()
		defer running.leave()
		return nil, g.wait(ctx)
	})
	n := c.Nodes[1]
	n.Handle(verbApply, h, transport.Concurrent(1), transport.Named("apply"))
	errs := make(chan error, 3)
	send := func() {
		go func() {
			_, err := c.Nodes[0].Request(ctxTimeout(t, 20*time.Second), c.ID(1), verbApply, nil)
			errs <- err
		}()
	}
	send()
	send()
	waitFor(t, 10*time.Second, "one running, one queued", func() bool {
		s := stage(n, verbApply)
		return s.Active == 1 && s.Queued == 1
	})
	before := stage(n, verbApply)

	n.Handle(verbApply, h, transport.Concurrent(1), transport.Named("apply"))
	after := stage(n, verbApply)
	assert.GreaterOrEqual(t, after.Started, before.Started, "Started is a counter")
	assert.Equal(t, 1, after.Active, "the handler still running")
	assert.Equal(t, 1, after.Queued, "the message still waiting")
	send()
	waitFor(t, 10*time.Second, "the third request queued", func() bool { return stage(n, verbApply).Queued == 2 })
	assert.EqualValues(t, 1, running.peak.Load(), "Concurrent(1) over both registrations")

	n.Handle(verbApply, nil)
	assert.Equal(t, 1, stage(n, verbApply).Active, "a removed verb's stage stays in Stats while it works")
	g.open()
	for range 3 {
		require.NoError(t, within(t, errs, 10*time.Second, "a request"))
	}
	assert.EqualValues(t, 3, stage(n, verbApply).Started)
}

// TestCancelsInAFrameWithMoreReachTheHandlersOfAFullNode: a requester's
// cancels travel on the urgent lane, whose writer puts whatever is queued
// into one frame: a burst of cancels (a coordinator giving up on a fan-out
// of requests) beyond the 4 KiB a frame is read before its room, or a
// cancel beside a heartbeat or gossip message routed Urgent. A node whose
// inbound capacity the running handlers hold must still act on those
// cancels: they are what would free that capacity.
func TestCancelsInAFrameWithMoreReachTheHandlersOfAFullNode(t *testing.T) {
	const (
		verbScan   transport.Verb = 203
		verbGossip transport.Verb = 204
		requests                  = 20
	)
	cancelMsg := func(id uint64) []byte {
		return wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagCancel, ID: id, Verb: uint32(verbScan)})
	}
	for _, tc := range []struct {
		name  string
		frame func() []byte // the urgent lane's frame that cancels requests 1..requests
	}{
		// (A burst beyond 4 KiB in one frame is never acted on; the
		// urgent lane's writer splits it: TestWriteBatchPutsCancelsInFramesReadWithoutRoom.)
		{"a burst of cancels, in frames of 4 KiB at most", func() []byte {
			var frames, msgs []byte
			add := func(m []byte) {
				if len(msgs)+len(m) > 4<<10 {
					frames = append(append(frames, wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msgs)...), msgs...)
					msgs = nil
				}
				msgs = append(msgs, m...)
			}
			for id := uint64(1); id <= requests; id++ {
				add(cancelMsg(id))
			}
			for id := uint64(1000); id < 1300; id++ { // the burst's requests not yet read
				add(cancelMsg(id))
			}
			return append(append(frames, wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msgs)...), msgs...)
		}},
		{"cancels beside a gossip message", func() []byte {
			var msgs []byte
			for id := uint64(1); id <= requests; id++ {
				msgs = append(msgs, cancelMsg(id)...)
			}
			msgs = append(msgs, wire.AppendHeader(nil, &wire.Header{ID: 999, Verb: uint32(verbGossip), PayloadLength: 4})...)
			msgs = append(msgs, "ping"...)
			return append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msgs), msgs...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
				cfg.Security.AcceptUnknownPeers = true
				cfg.Memory.MaxMessageSize = 256 << 10
				// The requester's reader, out of room, waits at its peer's
				// account, which its urgent lane shares.
				cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
			})
			node := c.Nodes[0]
			var started, stopped atomic.Int64
			node.Handle(verbScan, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
				started.Add(1)
				<-ctx.Done() // a scan that runs until its caller gives up
				stopped.Add(1)
				return nil, ctx.Err()
			}))
			node.Handle(verbGossip, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
				return nil, nil
			}))
			stop := make(chan struct{})
			var held sync.WaitGroup
			defer func() { close(stop); held.Wait() }()
			small := dialAs(node.Addr().String(), "mallory", routing.Small)
			urgent := dialAs(node.Addr().String(), "mallory", routing.Urgent)
			require.NotNil(t, small)
			require.NotNil(t, urgent)
			held.Go(func() { holdOpen(small, stop) })
			held.Go(func() { holdOpen(urgent, stop) })

			var frames []byte
			for id := uint64(1); id <= requests; id++ {
				frames = append(frames, requestFrame(id, verbScan, make([]byte, 60<<10))...)
			}
			go func() { _, _ = small.Write(frames) }() // blocks once the node stops reading
			waitFor(t, 5*time.Second, "the node full, its reader waiting for room, every request read running", func() bool {
				s := stage(node, verbScan)
				return node.Stats().InboundWaiters == 1 && s.Queued == 0 && int64(s.Active) == started.Load() && s.Active > 0
			})
			running := started.Load()

			_, err := urgent.Write(tc.frame())
			require.NoError(t, err)
			if !assert.Eventually(t, func() bool { return stopped.Load() >= running }, 3*time.Second, time.Millisecond) {
				t.Logf("handlers whose requests were cancelled: %d of %d stopped", stopped.Load(), running)
			}
		})
	}
}

// TestARequestWhoseConnectionEndedIsNotStarted: a request waiting in its
// stage when the connection it came on ends can never be answered — its
// response goes back on that connection — and its caller has already
// failed it (ErrConnectionReset) and may well have retried it elsewhere.
// It is dropped when its turn comes (DroppedInbound[ReasonConnectionReset])
// instead of run: it ran, holding a worker and its bytes for nothing, and
// doing its work twice if it was retried.
func TestARequestWhoseConnectionEndedIsNotStarted(t *testing.T) {
	const verbWrite transport.Verb = 205
	c := newCluster(t, 2, nil)
	started := make(chan string, 2)
	release := make(chan struct{})
	c.Nodes[1].Handle(verbWrite, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- string(m.Payload)
		<-release
		return nil, nil
	}), transport.Concurrent(1))
	ended := make(chan error, 2)
	for _, p := range []string{"first", "second"} {
		go func() {
			_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbWrite, []byte(p))
			ended <- err
		}()
		if p == "first" {
			require.Equal(t, "first", within(t, started, 10*time.Second, "the first handler"))
		}
	}
	waitFor(t, 10*time.Second, "the second request queued behind the first", func() bool {
		return stage(c.Nodes[1], verbWrite).Queued == 1
	})
	require.NoError(t, c.Nodes[0].Close()) // the requester goes, and its connections with it
	for range 2 {
		require.Error(t, within(t, ended, 10*time.Second, "a request's end"))
	}
	waitFor(t, 10*time.Second, "n2 sees the connection end", func() bool {
		return c.Nodes[1].Stats().InboundConnections == 0
	})
	close(release)
	waitFor(t, 10*time.Second, "the queued request's turn", func() bool {
		return stage(c.Nodes[1], verbWrite).Queued == 0 && stage(c.Nodes[1], verbWrite).Active == 0
	})
	select {
	case p := <-started:
		t.Fatalf("the %s request's handler ran after its connection had ended", p)
	default:
	}
	assert.Equal(t, uint64(1), c.Nodes[1].Stats().Total().DroppedInbound[transport.ReasonConnectionReset])
}

// fullNode is two nodes, n2's inbound room for n1 (1 MiB) held by the
// handlers of n1's requests of verbScan, which run until their callers
// give up; n1's verbGossip goes on the urgent lane, to gossip.
type fullNode struct {
	c       *transporttest.Cluster
	n1, n2  *transport.Transport
	running int64 // handlers holding the room
	stopped atomic.Int64
	giveUp  context.CancelFunc
}

func newFullNode(t *testing.T, verbScan, verbGossip transport.Verb, gossip transport.HandlerFunc) *fullNode {
	const requests = 20
	f := &fullNode{}
	f.c = newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbGossip: routing.Urgent}
	})
	f.n1, f.n2 = f.c.Nodes[0], f.c.Nodes[1]
	var started atomic.Int64
	f.n2.Handle(verbScan, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started.Add(1)
		<-ctx.Done() // a scan that runs until its caller gives up
		f.stopped.Add(1)
		return nil, ctx.Err()
	}))
	f.n2.Handle(verbGossip, gossip)
	ctx, giveUp := context.WithTimeout(context.Background(), 30*time.Second)
	f.giveUp = giveUp
	var calls sync.WaitGroup
	t.Cleanup(func() { giveUp(); calls.Wait() }) // before the cluster closes
	for range requests {
		calls.Go(func() { _, _ = f.n1.Request(ctx, f.c.ID(1), verbScan, make([]byte, 60<<10)) })
	}
	waitFor(t, 10*time.Second, "n2 full, its small-lane reader waiting for room, every request read running", func() bool {
		s := stage(f.n2, verbScan)
		return f.n2.Stats().InboundWaiters == 1 && s.Queued == 0 && int64(s.Active) == started.Load() && s.Active > 0
	})
	f.running = started.Load()
	return f
}

// cancelAll makes every caller give up, waits until n1 has written the
// cancels on the urgent lane, and reports whether the handlers holding
// n2's room all stopped within 3 s.
func (f *fullNode) cancelAll(t *testing.T) bool {
	urgentSent := func() uint64 {
		for _, s := range f.n1.Stats().Conns {
			if s.Peer == f.c.ID(1) && s.Lane == routing.Urgent {
				return s.MessagesSent
			}
		}
		return 0
	}
	before := urgentSent()
	f.giveUp()
	waitFor(t, 10*time.Second, "n1 wrote the cancels", func() bool { return urgentSent() >= before+uint64(f.running) })
	return assert.Eventually(t, func() bool { return f.stopped.Load() >= f.running }, 3*time.Second, time.Millisecond)
}

// TestCancelsBehindAnUrgentMessageReachTheHandlersOfAFullNode: the
// urgent lane carries a one-way message (gossip, a heartbeat) and then
// the cancels of requests whose handlers hold the receiver's inbound
// room, between two real nodes. The receiver read the message's frame
// before its room, found it was not cancels alone, and waited for room
// there: the cancels' frame behind it was never read, the handlers that
// hold the room ran on until their deadlines ("0 of 12 stopped"), and the
// gossip waited with them. A small urgent frame is now taken beyond the
// limits, one at a time a peer.
func TestCancelsBehindAnUrgentMessageReachTheHandlersOfAFullNode(t *testing.T) {
	for _, gossip := range []bool{false, true} {
		name := map[bool]string{false: "cancels alone", true: "cancels behind a gossip message"}[gossip]
		t.Run(name, func(t *testing.T) { testCancelsReachAFullNode(t, gossip) })
	}
}

func testCancelsReachAFullNode(t *testing.T, gossip bool) {
	gossiped := make(chan struct{}, 1)
	f := newFullNode(t, 206, 207, func(context.Context, *transport.Message) ([]byte, error) {
		gossiped <- struct{}{}
		return nil, nil
	})
	if gossip {
		// A gossip message on the urgent lane: its frame is read before
		// its room.
		require.NoError(t, f.n1.Send(ctxTimeout(t, 5*time.Second), f.c.ID(1), 207, []byte("ping")))
		waitFor(t, 10*time.Second, "the gossip handled, or n2's urgent reader waiting for its frame's room", func() bool {
			return len(gossiped) > 0 || f.n2.Stats().InboundWaiters == 2
		})
	}
	if !f.cancelAll(t) {
		t.Logf("handlers whose requests were cancelled: %d of %d stopped", f.stopped.Load(), f.running)
	}
	if gossip {
		assert.Len(t, gossiped, 1, "the gossip message handled while the node is full")
	}
}

// TestUrgentFramesBeyondTheLimitsAreBoundedAcrossConnections: a small
// urgent frame that finds no room is taken beyond the inbound limits, "one
// at a time per connection" (transport/doc.go). But the claim was marked
// on the connection (inConn.over) while the frame it covers lives on
// after it: in a stage's queue, behind handlers that hold the room. A
// peer that writes such a frame, hangs up and dials again — never more
// than one urgent connection open — or one that takes a new node ID for
// each connection, took another 4 KiB beyond the limits every time, with
// no bound but the handlers' pace. The claim is now the peer's, and at
// most 16 such frames are held node-wide.
func TestUrgentFramesBeyondTheLimitsAreBoundedAcrossConnections(t *testing.T) {
	for _, manyIDs := range []bool{false, true} {
		name := map[bool]string{false: "one peer dialling again", true: "a new node ID a connection"}[manyIDs]
		t.Run(name, func(t *testing.T) { testUrgentOverdraftBound(t, manyIDs) })
	}
}

func testUrgentOverdraftBound(t *testing.T, manyIDs bool) {
	const (
		verbSlow transport.Verb = 209
		limit                   = 256 << 10 // per peer and node-wide
		conns                   = 64
		frame                   = 4 << 10
		// A generous bound on the bookkeeping a message read holds
		// beyond the limits (workCost, a few hundred bytes).
		bookkeeping = 1 << 10
		// Small urgent frames held beyond the limits node-wide, at most
		// (transport/doc.go): one a peer, 16 in all.
		overdrafts = 16
	)
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Memory.MaxMessageSize = 64 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: limit, Node: limit}
	})
	node := c.Nodes[0]
	addr := node.Addr().String()
	release := make(chan struct{})
	defer close(release)
	node.Handle(verbSlow, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		<-release // a handler slower than its peer's messages come
		return nil, nil
	}), transport.Concurrent(1))
	oneWay := func(id uint64, size int) []byte {
		msg := wire.AppendHeader(nil, &wire.Header{ID: id, Verb: uint32(verbSlow), PayloadLength: uint32(size)})
		msg = append(msg, make([]byte, size)...)
		return append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...)
	}
	stop := make(chan struct{})
	var held sync.WaitGroup
	defer func() { close(stop); held.Wait() }()

	// Fill mallory's room, and most of the node's: the reader of mallory's
	// small lane then waits for room.
	small := dialAs(addr, "mallory", routing.Small)
	require.NotNil(t, small)
	held.Go(func() { holdOpen(small, stop) })
	var fill []byte
	for id := uint64(1); id <= 8; id++ {
		fill = append(fill, oneWay(id, 60<<10)...)
	}
	go func() { _, _ = small.Write(fill) }()
	waitFor(t, 10*time.Second, "the node full, a reader waiting for room", func() bool {
		return node.Stats().InboundWaiters == 1 && stage(node, verbSlow).Active == 1
	})
	queued := stage(node, verbSlow).Queued

	// One urgent connection at a time: a small frame each, then hang up.
	taken := 0
	for i := range conns {
		id := "mallory"
		if manyIDs {
			id = fmt.Sprintf("ghost-%d", i)
		}
		urgent := dialAs(addr, id, routing.Urgent)
		require.NotNil(t, urgent, "connection %d", i)
		_, err := urgent.Write(oneWay(uint64(100+i), frame-64))
		require.NoError(t, err)
		waitFor(t, 10*time.Second, "the urgent frame read and queued, or its reader waiting for room", func() bool {
			return stage(node, verbSlow).Queued == queued+taken+1 || node.Stats().InboundWaiters == 2
		})
		if stage(node, verbSlow).Queued != queued+taken+1 {
			urgent.Close() // it waits for room, as every one after it would
			break
		}
		taken++ // beyond the limits, or within what was left of them
		urgent.Close()
		waitFor(t, 10*time.Second, "the urgent connection ended", func() bool {
			return node.Stats().InboundConnections == 1
		})
	}
	t.Logf("%d urgent connections, one at a time: %d frames read without waiting (within what was left of the node's room, or beyond it)", conns, taken)

	// At most two connections were ever open, mallory's small one and
	// an urgent one: one urgent frame beyond the limits at a time for
	// one peer, and a few more for a crowd of made-up IDs.
	st := node.Stats()
	beyond := 1
	if manyIDs {
		beyond = overdrafts
	}
	bound := int64(limit + beyond*frame + (queued+1+taken)*bookkeeping)
	assert.LessOrEqual(t, st.InboundHeld, bound,
		"node-wide: %d KiB held with a %d KiB limit, after %d urgent connections one at a time", st.InboundHeld>>10, limit>>10, conns)
	if !manyIDs {
		for _, p := range st.Peers {
			if p.Peer == "mallory" {
				assert.LessOrEqual(t, p.InboundHeld, bound, "mallory: %d KiB held with a %d KiB limit", p.InboundHeld>>10, limit>>10)
			}
		}
	}
}

// TestAnUrgentFrameWaitingForRoomTakesTheAllowanceOnceItIsFree: two
// gossip messages on the urgent lane, in two frames, reach a full node
// while the first one's handler is still running; then the node's
// requests are cancelled. The first frame takes the peer's one small
// urgent frame beyond the limits; the second, read while the first is
// held, waits for room. Once the first is done the allowance is free
// again, but the reader that waits for the second frame's room is not
// told: it waits on for the room the requests hold, and the cancels
// behind it are never read — the requests' handlers run on until their
// deadlines, and the second gossip message with them.
func TestAnUrgentFrameWaitingForRoomTakesTheAllowanceOnceItIsFree(t *testing.T) {
	const verbGossip transport.Verb = 211
	gossipStarted := make(chan struct{}, 2)
	slowGossip := make(chan struct{})
	var slowOnce sync.Once
	defer slowOnce.Do(func() { close(slowGossip) })
	var gossiped atomic.Int64
	f := newFullNode(t, 210, verbGossip, func(context.Context, *transport.Message) ([]byte, error) {
		gossipStarted <- struct{}{}
		<-slowGossip // the first is still being handled when the second comes
		gossiped.Add(1)
		return nil, nil
	})
	n1, n2 := f.n1, f.n2

	// The first gossip message: taken beyond the limits, its handler runs.
	require.NoError(t, n1.Send(ctxTimeout(t, 5*time.Second), f.c.ID(1), verbGossip, []byte("one")))
	within(t, gossipStarted, 10*time.Second, "the first gossip message handled on a full node")
	// The second, while the first is held: its reader waits for room.
	require.NoError(t, n1.Send(ctxTimeout(t, 5*time.Second), f.c.ID(1), verbGossip, []byte("two")))
	waitFor(t, 10*time.Second, "n2's urgent reader waiting for the second frame's room", func() bool {
		return n2.Stats().InboundWaiters == 2 || len(gossipStarted) > 0
	})
	heldWithFirst := n2.Stats().InboundHeld
	// The first is done: the allowance is free again.
	slowOnce.Do(func() { close(slowGossip) })
	waitFor(t, 10*time.Second, "the first gossip message done, its frame given back", func() bool {
		return gossiped.Load() >= 1 && n2.Stats().InboundHeld < heldWithFirst
	})
	if !f.cancelAll(t) {
		t.Logf("handlers whose requests were cancelled: %d of %d stopped; gossip handled: %d of 2; n2 waiters for room: %d",
			f.stopped.Load(), f.running, gossiped.Load(), n2.Stats().InboundWaiters)
	}
	assert.Eventually(t, func() bool { return gossiped.Load() == 2 }, 3*time.Second, time.Millisecond,
		"the second gossip message handled while the node is full")
}
