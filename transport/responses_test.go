package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestResponsesReachAPausedNode: a node whose inbound connections from a
// peer are all paused — its handlers stalled, its capacity full of that
// peer's messages — still gets that peer's responses to its own
// requests, small and large: they come back on its own connections.
func TestResponsesReachAPausedNode(t *testing.T) {
	g := newGate()
	defer g.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = tightInbound
		cfg.Memory.MaxMessageSize = 256 << 10
	})
	c.Nodes[0].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))

	// n2 floods n1 on the small and large lanes until n1 stops reading.
	flood := func(size int) {
		for range 2000 {
			if err := c.Nodes[1].Send(context.Background(), c.ID(0), verbData, make([]byte, size)); err != nil {
				require.ErrorIs(t, err, transport.ErrOverloaded)
			}
		}
	}
	flood(1000)
	flood(100 << 10)
	paused := func(lane routing.Lane) bool {
		for _, cs := range c.Nodes[0].Stats().Conns {
			if cs.Peer == c.ID(1) && cs.Lane == lane && cs.Throttled > 0 {
				return true
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, "n1 paused on both lanes", func() bool { return paused(routing.Small) && paused(routing.Large) })

	for _, size := range []int{10, 100 << 10} {
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, make([]byte, size))
		require.NoError(t, err, "a request of %d bytes", size)
		assert.Len(t, resp, size)
	}
	assert.True(t, paused(routing.Small) && paused(routing.Large))
}

// TestLargeResponseToAPausedRequester: a node's request is answered with
// a large response while the responder has stopped reading that node's
// connection (its handlers stalled on the node's one-way flood). The
// response's parts waited for the requester's grant, and the grant went
// out on the paused connection, behind the flood: the response was held
// until the responder read on. Now the requester takes large responses
// without granting them (wire.CapEagerResponses) and the parts follow at
// once.
func TestLargeResponseToAPausedRequester(t *testing.T) {
	stalled, answer := newGate(), newGate()
	defer stalled.open()
	defer answer.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = tightInbound
		cfg.Memory.MaxMessageSize = 256 << 10
	})
	responder := c.Nodes[1]
	responder.Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, stalled.wait(ctx)
	}))
	asked := make(chan struct{})
	responder.Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		close(asked)
		if err := answer.wait(ctx); err != nil {
			return nil, err
		}
		return make([]byte, 200<<10), nil
	}))
	type result struct {
		resp []byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 20*time.Second), c.ID(1), verbEcho, []byte("ask"))
		got <- result{resp, err}
	}()
	<-asked
	paused := func() bool {
		for _, cs := range responder.Stats().Conns {
			if cs.Peer == c.ID(0) && cs.Lane == routing.Small && cs.Throttled > 0 {
				return true
			}
		}
		return false
	}
	// The requester floods the responder's small lane until the responder
	// stops reading it.
	ctx := ctxTimeout(t, 20*time.Second)
	for i := 0; i < 4000 && (i%100 != 0 || !paused()); i++ {
		// No deadline, which the message would carry: a Send that waits
		// for room is given up after a moment.
		send, cancel := context.WithCancel(ctx)
		stop := time.AfterFunc(5*time.Millisecond, cancel)
		err := c.Nodes[0].Send(send, c.ID(1), verbData, make([]byte, 1000))
		stop.Stop()
		cancel()
		if err != nil {
			require.True(t, errors.Is(err, transport.ErrOverloaded) || errors.Is(err, context.Canceled), "%v", err)
		}
	}
	waitFor(t, 10*time.Second, "the responder paused on the requester's small lane", paused)
	answer.open()
	select {
	case r := <-got:
		require.NoError(t, r.err)
		assert.Len(t, r.resp, 200<<10)
	case <-time.After(10 * time.Second):
		t.Fatal("the large response is held until the responder reads the requester's flood")
	}
	assert.True(t, paused(), "the responder still paused")
}

// TestStrangerGetsItsResponse: a node the responder's membership does not
// list (a client, or a node not gossiped yet) gets its responses when the
// responder accepts unknown peers, and is refused when it does not.
func TestStrangerGetsItsResponse(t *testing.T) {
	for _, accept := range []bool{true, false} {
		c := newCluster(t, 1, func(_ int, cfg *transport.Config) { cfg.Security.AcceptUnknownPeers = accept })
		handleAll(c, verbEcho, func(_ context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
		stranger, err := transport.New(transporttest.Config("client", "test", c.Members))
		require.NoError(t, err)
		stranger.Start()
		resp, err := stranger.Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("hi"))
		if accept {
			require.NoError(t, err)
			assert.Equal(t, "hi", string(resp))
		} else {
			assert.Error(t, err)
		}
		stranger.Close()
	}
}

// TestResponseIsNotRefusedWhileASendWaitsForRoom: one-way messages to
// two peers that are down fill most of n1's node-wide outbound limit (each
// large lane may hold less than it: see Limits), and one more Send
// (WaitForCapacity) waits for room it does not fit in. A 1 KiB
// response of n1's fits in what is left; it was replaced by ErrOverloaded
// all the same, as every response of n1's to every peer was while the Send
// waited: responses took room in order behind the waiter, although they
// cannot wait.
func TestResponseIsNotRefusedWhileASendWaitsForRoom(t *testing.T) {
	const (
		verbHint transport.Verb = 210
		verbGet  transport.Verb = 211
	)
	c := newCluster(t, 4, func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		if i == 0 {
			cfg.Memory.Outbound = transport.Limits{PerConnection: 128 << 10, PerPeer: 8 << 20, Node: 1 << 20}
			cfg.Memory.WaitForCapacity = true
		}
	})
	c.Nodes[0].Handle(verbGet, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	// n3 and n4 are down: messages to them stay queued, on large lanes
	// that may hold 640 KiB each (the node's 896 KiB for sends, less two
	// connections' 128 KiB).
	require.NoError(t, c.Nodes[2].Close())
	require.NoError(t, c.Nodes[3].Close())

	hint := make([]byte, 200<<10)
	for i := range 4 { // 800 KiB of the 896 KiB sends may take (see Limits)
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(2+i%2), verbHint, hint))
	}
	_, err := c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbGet, make([]byte, 1<<10))
	require.NoError(t, err, "the response fits while nothing waits")

	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { waiting <- c.Nodes[0].Send(ctx, c.ID(2), verbHint, hint) }()
	defer func() { cancel(); <-waiting }()
	waitFor(t, 5*time.Second, "the fifth Send waiting for room", func() bool { return c.Nodes[0].Stats().OutboundWaiters == 1 })

	resp, err := c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbGet, make([]byte, 1<<10))
	require.NoError(t, err, "the response fits in the room the waiting Send does not")
	assert.Len(t, resp, 1<<10)
}

// TestLargestResponseWithinTheLimitsIsTaken: a response of MaxMessageSize
// to a requester whose inbound limits hold exactly that much, which
// validated limits allow, and which holds nothing else. The requester
// took room for it at its buffer's pool class, up to a quarter more than
// its length, found that beyond its limits, and refused it: the call
// failed ErrOverloaded every time, though a request of the same size the
// other way was taken (inlarge.go allocates such a message at its length).
func TestLargestResponseWithinTheLimitsIsTaken(t *testing.T) {
	const size = 1<<20 + 64<<10 // its pool class is 1.25 MiB
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: size, Node: size}
		cfg.Memory.MaxMessageSize = size
	})
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return make([]byte, size), nil
	}))
	c.Nodes[0].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	_, err := c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, make([]byte, size))
	require.NoError(t, err, "a request of %d bytes", size)
	waitFor(t, 5*time.Second, "the request's room given back", func() bool { return c.Nodes[0].Stats().InboundHeld == 0 })
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hi"))
	require.NoError(t, err, "a response of %d bytes", size)
	assert.Len(t, resp, size)
	waitFor(t, 5*time.Second, "the response's room given back", func() bool { return c.Nodes[0].Stats().InboundHeld == 0 })
}
