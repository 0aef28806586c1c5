package transport_test

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// tightInbound is small enough that a flood fills it at once.
var tightInbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 512 << 10, Node: 1 << 20}

// gate blocks handlers until opened.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate() *gate  { return &gate{ch: make(chan struct{})} }
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait(ctx context.Context) error {
	select {
	case <-g.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestStalledHandlerPausesReading: a flooding sender and a handler that
// does not return. The receiver's inbound bytes stay within its limits at
// every step, the sender's queue fills and Send reports overload, the heap
// stays bounded, and once the handler resumes every message that was
// accepted is delivered.
func TestStalledHandlerPausesReading(t *testing.T) {
	g := newGate()
	defer g.open()
	var handled atomic.Int64
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = tightInbound
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Outbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 1 << 20, Node: 2 << 20}
	})
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		handled.Add(1)
		return nil, nil
	}))
	limit := tightInbound.Node // whatever the lanes: the node's limit holds

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	payload := make([]byte, 1000)
	accepted, overloaded := 0, 0
	for range 50_000 {
		err := c.Nodes[0].Send(context.Background(), c.ID(1), verbData, payload)
		switch {
		case err == nil:
			accepted++
		case assert.ErrorIs(t, err, transport.ErrOverloaded):
			overloaded++
		}
		if held := c.Nodes[1].Stats().InboundHeld; held > limit {
			t.Fatalf("inbound bytes %d above the limit %d", held, limit)
		}
	}
	require.NotZero(t, overloaded, "the sender felt the back-pressure")
	waitFor(t, 10*time.Second, "reader paused", func() bool { return c.Nodes[1].Stats().Total().Throttled > 0 })
	var during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&during)
	assert.Less(t, during.HeapAlloc, before.HeapAlloc+32<<20, "heap bounded while flooded")

	g.open()
	waitFor(t, 30*time.Second, "every accepted message delivered", func() bool { return handled.Load() == int64(accepted) })
	st := c.Nodes[1].Stats()
	assert.Zero(t, st.InboundHeld, "all inbound capacity returned")
	assert.Positive(t, st.Total().ThrottledTime)
	out := c.Nodes[0].Stats()
	waitFor(t, 5*time.Second, "sender capacity returned", func() bool {
		return c.Nodes[0].Stats().OutboundBytes == 0 && c.Nodes[0].Stats().Total().PendingBytes == 0
	})
	assert.Equal(t, uint64(overloaded), out.Total().Dropped[transport.ReasonOverloaded])
}

// TestRejectModeAnswersOverloaded: with OverloadReject a receiver out of
// capacity refuses large messages before they travel — a request fails
// with ErrOverloaded, a one-way message is dropped by its sender with
// ReasonOverloaded — and counts them.
func TestRejectModeAnswersOverloaded(t *testing.T) {
	g := newGate()
	defer g.open()
	started := make(chan struct{}, 1)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 300 << 10, PerPeer: 300 << 10, Node: 300 << 10}
		cfg.Memory.MaxMessageSize = 200 << 10
		cfg.Memory.InboundOverload = transport.OverloadReject
	})
	c.Nodes[1].Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		return nil, g.wait(ctx)
	}))
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	// Large messages take inbound capacity one by one: the first stalls
	// its handler holding 224 KiB (its buffer) of the connection's 300.
	big := make([]byte, 200<<10)
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbBlock, big))
	<-started
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbBlock, big))

	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, big)
	require.ErrorIs(t, err, transport.ErrOverloaded)
	waitFor(t, 5*time.Second, "refusals counted on both sides", func() bool {
		in := c.Nodes[1].Stats().Total().DroppedInbound[transport.ReasonOverloaded]
		out := c.Nodes[0].Stats().Total().Dropped[transport.ReasonOverloaded]
		return in == 2 && out == 2
	})
	g.open()
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("after"))
	require.NoError(t, err)
	assert.Equal(t, "after", string(resp))
}

// TestFloodingPeerDoesNotStarveOthers: n1 floods n3, whose handler for it
// is slow; n2's requests to n3 still succeed within their deadline.
func TestFloodingPeerDoesNotStarveOthers(t *testing.T) {
	g := newGate()
	defer g.open()
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 512 << 10, Node: 1 << 20}
		cfg.Memory.MaxMessageSize = 256 << 10
	})
	c.Nodes[2].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	c.Nodes[2].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		payload := make([]byte, 4000)
		for ctx.Err() == nil {
			if err := c.Nodes[0].Send(ctx, c.ID(2), verbData, payload); err != nil {
				runtime.Gosched()
			}
		}
	}()
	waitFor(t, 10*time.Second, "n3 throttles n1", func() bool { return c.Nodes[2].Stats().Total().Throttled > 0 })
	for i := range 50 {
		resp, err := c.Nodes[1].Request(ctxTimeout(t, 2*time.Second), c.ID(2), verbEcho, []byte{byte(i)})
		require.NoError(t, err, "request %d from the well-behaved peer", i)
		assert.Equal(t, []byte{byte(i)}, resp)
	}
	stop()
	wg.Wait()
}

// TestSetLimitsTakesEffectOnLiveConnections: lowering the outbound limit
// makes the next Send overload; raising it lets sends through again.
func TestSetLimitsTakesEffectOnLiveConnections(t *testing.T) {
	g := newGate()
	defer g.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Memory.MaxMessageSize = 64 << 10 })
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	n := c.Nodes[0]
	require.NoError(t, n.Send(context.Background(), c.ID(1), verbData, []byte("warm up the connection")))

	// Outbound: a sender whose peer is not reading fills what it may queue.
	require.NoError(t, n.SetLimits(transport.Limits{PerConnection: 128 << 10, PerPeer: 512 << 10, Node: 512 << 10}, transport.Limits{}))
	n2 := c.Nodes[1]
	require.NoError(t, n2.SetLimits(transport.Limits{}, transport.Limits{PerConnection: 256 << 10, PerPeer: 512 << 10, Node: 512 << 10}))
	payload := make([]byte, 8<<10)
	var err error
	for range 10_000 {
		if err = n.Send(context.Background(), c.ID(1), verbData, payload); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, transport.ErrOverloaded, "the lowered limits bind")

	// Raising the limits lets the same sender through at once.
	require.NoError(t, n.SetLimits(transport.Limits{PerConnection: 64 << 20}, transport.Limits{}))
	assert.NoError(t, n.Send(context.Background(), c.ID(1), verbData, payload))

	// Validation applies.
	assert.Error(t, n.SetLimits(transport.Limits{PerConnection: 1, PerPeer: 1, Node: 1}, transport.Limits{}))
}

// waitingPair returns two nodes with small limits and WaitForCapacity,
// the second holding its verbData handlers at g; tweak, if any, adjusts
// both configs.
func waitingPair(t *testing.T, g *gate, tweak func(*transport.Config)) *transporttest.Cluster {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 64 << 10
		cfg.Memory.WaitForCapacity = true
		cfg.Memory.Outbound = transport.Limits{PerConnection: 128 << 10, PerPeer: 512 << 10, Node: 512 << 10}
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 512 << 10, Node: 512 << 10}
		if tweak != nil {
			tweak(cfg)
		}
	})
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	return c
}

// fillUntilWaiting sends payloads from the first node to the second
// until a Send waits for capacity, and returns that Send's error (the
// cancellation that ended its wait), or nil if none waited.
func fillUntilWaiting(c *transporttest.Cluster, payload []byte) error {
	for range 10_000 {
		// No deadline (it would become the messages' expiry, and expired
		// messages drain at once): a cancellation ends the wait instead.
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(50*time.Millisecond, cancel)
		err := c.Nodes[0].Send(ctx, c.ID(1), verbData, payload)
		stop.Stop()
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestWaitForCapacity: with WaitForCapacity a Send blocks until capacity
// frees, or fails with the context's error.
func TestWaitForCapacity(t *testing.T) {
	g := newGate()
	defer g.open()
	c := waitingPair(t, g, nil)
	payload := make([]byte, 8<<10)
	require.ErrorIs(t, fillUntilWaiting(c, payload), context.Canceled, "a full sender waits until its context ends")
	done := make(chan error)
	go func() { done <- c.Nodes[0].Send(context.Background(), c.ID(1), verbData, payload) }()
	g.open()
	require.NoError(t, <-done, "the waiting Send goes through once capacity frees")
}

// TestSmallLaneDoesNotWaitBehindALargeLaneWaitingForRoom: with
// WaitForCapacity, a large message waiting for its lane's room does not
// hold up small messages, whose room at the peer is set apart from the
// large lane's. (It did when the large message did not fit the peer's
// room either: small requests then waited for the large lane to drain —
// 9 ms at p50 in bench -scenario hol -systems internode-wait.)
func TestSmallLaneDoesNotWaitBehindALargeLaneWaitingForRoom(t *testing.T) {
	g := newGate()
	defer g.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 512 << 10
		cfg.Memory.WaitForCapacity = true
		// The large lane may hold 1 MiB − 2×64 KiB, less the 128 KiB its
		// peer's sends leave to responses: two 300 KiB messages, and sends
		// may take 896 KiB at the peer.
		cfg.Memory.Outbound = transport.Limits{PerConnection: 64 << 10, PerPeer: 1 << 20, Node: 1 << 20}
		cfg.Memory.Inbound = transport.Limits{PerConnection: 64 << 10, PerPeer: 1 << 20, Node: 1 << 20}
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	large := make([]byte, 300<<10)
	require.ErrorIs(t, fillUntilWaiting(c, large), context.Canceled, "the large lane fills")

	// A large message that fits neither its lane nor, with the small
	// lanes' room counted, its peer waits.
	waitCtx, stopWaiting := context.WithCancel(context.Background())
	defer stopWaiting()
	waited := make(chan error, 1)
	go func() { waited <- c.Nodes[0].Send(waitCtx, c.ID(1), verbData, large) }()
	waitFor(t, 10*time.Second, "the large Send to wait", func() bool { return c.Nodes[0].Stats().OutboundWaiters == 1 })

	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte{byte(i)})
		cancel()
		require.NoError(t, err, "small request %d", i)
		require.Equal(t, []byte{byte(i)}, resp)
	}
	g.open()
	require.NoError(t, <-waited, "the large Send goes through once the receiver reads again")
}

// TestRequestWaitingForCapacityEndsAtItsTimeout: a Request without a
// deadline of its own that waits for outbound capacity (WaitForCapacity)
// ends at its verb's default timeout, which its context does not carry.
func TestRequestWaitingForCapacityEndsAtItsTimeout(t *testing.T) {
	g := newGate()
	defer g.open()
	c := waitingPair(t, g, func(cfg *transport.Config) {
		cfg.Timeouts.PerVerb = map[transport.Verb]time.Duration{verbEcho: 100 * time.Millisecond}
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	payload := make([]byte, 8<<10)
	require.ErrorIs(t, fillUntilWaiting(c, payload), context.Canceled)
	done := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(context.Background(), c.ID(1), verbEcho, payload)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
	case <-time.After(10 * time.Second):
		t.Fatal("a Request waiting for capacity outlived its 100 ms timeout")
	}
	assert.EqualValues(t, 1, c.Nodes[0].Stats().Total().Dropped[transport.ReasonExpired], "its message counted once, as expired")
}

// TestLoweredLimitsDoNotRefuseAWaitingMessageThatFits: a large message
// (8.5 MiB) waits for inbound room behind another one held by its
// handler. The receiver then lowers its inbound limits to 9.5 MiB a peer,
// which the message fits (and MaxMessageSize, 9 MiB, too: SetLimits
// accepts them). It was refused (ErrOverloaded) rather than delivered
// once the first handler returned: it waited for its buffer's pool class,
// 10 MiB, which no longer fit; it now waits again at its length, as it
// would had it begun after the change.
func TestLoweredLimitsDoNotRefuseAWaitingMessageThatFits(t *testing.T) {
	const maxMsg = 9 << 20
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = maxMsg
		cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 14 << 20, Node: 14 << 20}
	})
	g := newGate()
	defer g.open()
	running := make(chan struct{}, 2)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		running <- struct{}{}
		return nil, g.wait(ctx)
	}), transport.Concurrent(4))
	payload := make([]byte, 17<<19) // 8.5 MiB: its pool class is 10 MiB
	errs := make(chan error, 2)
	req := func() {
		go func() {
			_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbData, payload)
			errs <- err
		}()
	}
	req()
	within(t, running, 20*time.Second, "the first message's handler")
	req()
	waitFor(t, 20*time.Second, "the second message to wait for room", func() bool {
		return c.Nodes[1].Stats().InboundWaiters == 1
	})

	require.NoError(t, c.Nodes[1].SetLimits(transport.Limits{},
		transport.Limits{PerConnection: 1 << 20, PerPeer: 19 << 19, Node: 19 << 19})) // 9.5 MiB
	g.open()
	for i := range 2 {
		require.NoError(t, within(t, errs, 20*time.Second, "a request's outcome"), "request %d", i)
	}
}
