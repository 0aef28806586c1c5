package transport_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestExpiredQueuedRequestsGiveBackTheirRoom: a slow handler holds its
// verb's only turn (a stage of one, or the verb's ordered queue), and
// messages with a short deadline queued behind it fill n2's inbound room
// for n1's small lane, reading paused (OverloadPause) or later ones
// refused (OverloadReject). Their deadlines pass. The room they held
// stayed held until the slow handler returned and their turns came, so
// that a live request behind them, to another verb, waited on the paused
// reader until its own deadline or was refused as overloaded: a replica
// that stalled briefly then refused fresh reads for the thousands of
// short ones that had expired in its queues. Now each leaves its queue at
// its deadline, its room given back then: the live request is answered
// while the slow handler still runs, each expired message is counted once
// (withdrawn unwritten by n1, or dropped by n2 as expired, or refused as
// overloaded before it expired), and none of them is handled.
func TestExpiredQueuedRequestsGiveBackTheirRoom(t *testing.T) {
	for _, tc := range []struct {
		name   string
		how    transport.HandleOption
		policy transport.OverloadPolicy
		oneWay bool // the expiring messages are one-way (whole frames of them, on an ordered queue)
	}{
		{"stage/pause", transport.Concurrent(1), transport.OverloadPause, false},
		{"stage/reject", transport.Concurrent(1), transport.OverloadReject, false},
		{"ordered/pause", transport.Ordered(), transport.OverloadPause, false},
		{"ordered/reject", transport.Ordered(), transport.OverloadReject, false},
		{"ordered-oneway/pause", transport.Ordered(), transport.OverloadPause, true},
		{"ordered-oneway/reject", transport.Ordered(), transport.OverloadReject, true},
		{"stage-oneway/pause", transport.Concurrent(1), transport.OverloadPause, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, time.Minute, func(t *testing.T) { testQueuedExpiry(t, tc.how, tc.policy, tc.oneWay) })
		})
	}
}

func testQueuedExpiry(t *testing.T, how transport.HandleOption, policy transport.OverloadPolicy, oneWay bool) {
	const (
		verbSlow  transport.Verb = 243
		verbQuick transport.Verb = 244
		queued                   = 32 // of 32 KiB: twice n2's room for the connection
		ttl                      = 100 * time.Millisecond
	)
	c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
		cfg.Telemetry.DisableSocketMeasurement = true
		cfg.Memory.MaxMessageSize = 64 << 10
		if i == 1 {
			cfg.Memory.Inbound = transport.Limits{PerConnection: 512 << 10, PerPeer: 1 << 20, Node: 2 << 20}
			cfg.Memory.InboundOverload = policy
		}
	}})
	require.NoError(t, err)
	defer c.Close()
	release := make(chan struct{})
	defer close(release) // before the cluster closes
	var handled atomic.Int64
	c.Nodes[1].Handle(verbSlow, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		handled.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}), how)
	c.Nodes[1].Handle(verbQuick, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return []byte("ok"), nil
	}))
	n1, n2, to := c.Nodes[0], c.Nodes[1], c.ID(1)

	slow := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, time.Minute), to, verbSlow, []byte("slow"))
		slow <- err
	}()
	synctest.Wait()
	require.EqualValues(t, 1, handled.Load(), "the slow handler runs")

	ctx, cancel := context.WithTimeout(context.Background(), ttl)
	defer cancel()
	results := make(chan error, queued)
	for range queued {
		go func() {
			if oneWay {
				results <- n1.Send(ctx, to, verbSlow, make([]byte, 32<<10))
				return
			}
			_, err := n1.Request(ctx, to, verbSlow, make([]byte, 32<<10))
			results <- err
		}()
	}
	synctest.Wait()
	switch policy {
	case transport.OverloadPause:
		require.Equal(t, 1, n2.Stats().InboundWaiters, "n2's reader paused for room")
	case transport.OverloadReject:
		require.NotZero(t, laneStats(t, n2, "n1", routing.Small).DroppedInbound[transport.ReasonOverloaded], "n2's room full")
	}
	// Past every deadline, n2's too: a frame n2 read as it was sent has
	// n1's deadline. One that waited in the in-memory pipe while n2's
	// reader paused is dated when read (there is no receive queue to
	// sample), a ttl after the room came back, and so on: a few rounds.
	time.Sleep(10 * ttl)
	for range queued {
		err := <-results
		switch {
		case oneWay && err == nil: // queued; expired or refused since
		case !oneWay && errors.Is(err, context.DeadlineExceeded):
		case !oneWay && policy == transport.OverloadReject && errors.Is(err, transport.ErrOverloaded):
		default:
			t.Errorf("a message whose deadline passed: %v", err)
		}
	}
	synctest.Wait()

	// The slow handler still runs. Each expired message was withdrawn by
	// n1 unwritten, or dropped by n2 as expired (or refused as
	// overloaded), and the room they held is back.
	outcomes := func() (withdrawn, expired, refused uint64) {
		in := laneStats(t, n2, "n1", routing.Small).DroppedInbound
		return laneStats(t, n1, "n2", routing.Small).Dropped[transport.ReasonExpired],
			in[transport.ReasonExpired], in[transport.ReasonOverloaded]
	}
	withdrawn, expired, refused := outcomes()
	assert.Equal(t, uint64(queued), withdrawn+expired+refused,
		"each expired message counted once, the slow handler still running: %d withdrawn by n1, %d dropped by n2 as expired, %d refused (n2 holds %d bytes)",
		withdrawn, expired, refused, n2.Stats().InboundHeld)
	assert.Zero(t, stage(n2, verbSlow).Queued, "none left in the stage")

	quick := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 10*time.Second), to, verbQuick, make([]byte, 32<<10))
		quick <- err
	}()
	assert.NoError(t, <-quick, "a request behind the expired ones, the slow handler still running (n2 holds %d bytes)", n2.Stats().InboundHeld)
	assert.EqualValues(t, 1, handled.Load(), "no expired message handled")

	release <- struct{}{}
	require.NoError(t, <-slow)
	synctest.Wait()
	assert.Zero(t, n2.Stats().InboundHeld, "n2's room all back")
	w, e, r := outcomes()
	assert.Equal(t, [3]uint64{withdrawn, expired, refused}, [3]uint64{w, e, r}, "counted once: not again as their turns came")
	assert.Equal(t, uint64(2), laneStats(t, n2, "n1", routing.Small).MessagesReceived, "the slow request and the one behind: no other handed to a handler")
	assert.EqualValues(t, 1, handled.Load(), "no expired message handled")
}

// TestCancelsRaceTheExpiryOfQueuedRequests: requests queued behind a
// slow handler (a stage of one, or the verb's ordered queue) whose
// callers cancel them about as their deadlines pass, so that on n2 the
// cancel's withdrawal races the queue's expiry (and the cancel may come
// after the request left as expired, or before it arrived). Each request
// ends in exactly one outcome, counted once: withdrawn by n1 unwritten,
// or dropped by n2 as cancelled or as expired; none is handled, and none
// is counted again once the slow handler returns.
func TestCancelsRaceTheExpiryOfQueuedRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		how  transport.HandleOption
	}{{"stage", transport.Concurrent(1)}, {"ordered", transport.Ordered()}} {
		t.Run(tc.name, func(t *testing.T) { testCancelsRaceTheExpiry(t, tc.how) })
	}
}

func testCancelsRaceTheExpiry(t *testing.T, how transport.HandleOption) {
	const verbSlow transport.Verb = 245
	const requests = 400
	c := newCluster(t, 2, nil)
	g := newGate()
	defer g.open()
	var handled atomic.Int64
	c.Nodes[1].Handle(verbSlow, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		handled.Add(1)
		return nil, g.wait(ctx)
	}), how)
	n1, n2, to := c.Nodes[0], c.Nodes[1], c.ID(1)
	slow := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, time.Minute), to, verbSlow, []byte("slow"))
		slow <- err
	}()
	waitFor(t, 10*time.Second, "the slow handler running", func() bool { return handled.Load() == 1 })

	rng := rand.New(rand.NewPCG(3, 4))
	results := make(chan error, requests)
	for i := range requests {
		ttl := time.Duration(5+rng.IntN(25)) * time.Millisecond
		cancelAfter := ttl + time.Duration(rng.IntN(2000)-1000)*time.Microsecond
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), ttl)
			defer cancel()
			if i%2 == 0 {
				stop := time.AfterFunc(cancelAfter, cancel)
				defer stop.Stop()
			}
			_, err := n1.Request(ctx, to, verbSlow, []byte("queued"))
			results <- err
		}()
	}
	for range requests {
		err := within(t, results, 10*time.Second, "a queued request's caller")
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a queued request: %v", err)
		}
	}
	outcomes := func() uint64 {
		out := laneStats(t, n1, "n2", routing.Small).Dropped
		in := laneStats(t, n2, "n1", routing.Small).DroppedInbound
		return out[transport.ReasonCanceled] + out[transport.ReasonExpired] +
			in[transport.ReasonCanceled] + in[transport.ReasonExpired]
	}
	waitFor(t, 10*time.Second, "every queued request counted, the slow handler still running", func() bool {
		return outcomes() >= requests
	})
	assert.Equal(t, uint64(requests), outcomes(), "counted once each")
	g.open()
	require.NoError(t, within(t, slow, 10*time.Second, "the slow request"))
	waitFor(t, 10*time.Second, "n2's room all back", func() bool { return n2.Stats().InboundHeld == 0 })
	assert.Equal(t, uint64(requests), outcomes(), "counted once each, not again as their turns came")
	assert.EqualValues(t, 1, handled.Load(), "none of them handled")
	assert.Zero(t, stage(n2, verbSlow).Queued)
}

// TestClosedNodeNotHeldByQueuedExpiryTimer: a one-way message with a long
// deadline, handled at once, armed its connection's expiry timer for that
// deadline. Once the node has closed, nothing of it may stay reachable: the
// timer of a connection that ended held the connection, and through it
// the whole closed transport, until that deadline passed — an hour here.
func TestClosedNodeNotHeldByQueuedExpiryTimer(t *testing.T) {
	const verb transport.Verb = 248
	closed := func() weak.Pointer[transport.Transport] {
		c, err := transporttest.Start(2, transporttest.Options{})
		require.NoError(t, err)
		defer c.Close()
		var handled atomic.Int64
		c.Nodes[1].Handle(verb, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			handled.Add(1)
			return nil, nil
		})) // one-way messages in order: the connection's ordered queue
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verb, []byte("x")))
		waitFor(t, 10*time.Second, "the message handled", func() bool { return handled.Load() == 1 })
		return weak.Make(c.Nodes[1])
	}()
	// A timer of the node's own that rings soon may hold it a moment
	// longer; the deadline's is an hour.
	waitFor(t, 10*time.Second, "the closed node let go of", func() bool {
		runtime.GC()
		return closed.Value() == nil
	})
}
