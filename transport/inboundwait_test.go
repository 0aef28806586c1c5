package transport_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestASmallFrameReadBeforeItsRoomExpiresFromItsArrival: under
// OverloadPause a small request frame that finds no room is read first
// (for the cancels in it), then waits for its room. Its TTL started when
// it was read; the reader stamped its arrival only once the room came, so
// a request whose caller had long given up (its deadline passed, and no
// cancel is sent for that) still ran its handler, with a deadline as far
// past the wait as its TTL.
func TestASmallFrameReadBeforeItsRoomExpiresFromItsArrival(t *testing.T) {
	const (
		verbHold  transport.Verb = 230
		verbQuick transport.Verb = 231
	)
	outbound := transport.Limits{PerConnection: 8 << 20, PerPeer: 16 << 20, Node: 32 << 20}
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
		cfg.Memory.Outbound = outbound
		cfg.Memory.InboundOverload = transport.OverloadPause
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	var holding atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	n2.Handle(verbHold, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		holding.Add(1)
		<-release
		return nil, nil
	}))
	var ran atomic.Int64
	n2.Handle(verbQuick, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		ran.Add(1)
		return []byte("late"), nil
	}))

	// n1 fills its room at n2 with large requests whose handlers hold it.
	var calls sync.WaitGroup
	defer calls.Wait()
	defer releaseOnce.Do(func() { close(release) })
	for range 3 {
		calls.Go(func() { _, _ = n1.Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbHold, make([]byte, 250<<10)) })
	}
	waitFor(t, 10*time.Second, "n1's room at n2 held by its large requests", func() bool { return holding.Load() == 3 })
	// What it holds is now beyond its limit: nothing more of its fits.
	require.NoError(t, n2.SetLimits(outbound, transport.Limits{PerConnection: 4 << 20, PerPeer: 600 << 10, Node: 8 << 20}))
	smallThrottled := func() (n uint64, expired uint64) {
		for _, s := range n2.Stats().Conns {
			if s.Peer == c.ID(0) && s.Lane == routing.Small {
				n += s.Throttled
				expired += s.DroppedInbound[transport.ReasonExpired]
			}
		}
		return n, expired
	}

	// A small request now finds no room: read, it waits for some. Its
	// caller gives up at its deadline.
	const ttl = 300 * time.Millisecond
	failed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ttl)
		defer cancel()
		_, err := n1.Request(ctx, c.ID(1), verbQuick, []byte("q"))
		failed <- err
	}()
	waitFor(t, 10*time.Second, "n2's small-lane reader waiting for the request's room", func() bool {
		n, _ := smallThrottled()
		return n == 1
	})
	err := within(t, failed, 10*time.Second, "the request to fail at its deadline")
	require.True(t, errors.Is(err, context.DeadlineExceeded), "request: %v", err)

	// The room comes back: the request, past its deadline, must be dropped
	// as expired, not run.
	releaseOnce.Do(func() { close(release) })
	waitFor(t, 10*time.Second, "the late request dropped or run", func() bool {
		_, expired := smallThrottled()
		return ran.Load() > 0 || expired > 0
	})
	require.Zero(t, ran.Load(), "a request past its deadline ran its handler")
}

// TestASmallFrameReadBeforeItsRoomIsCountedWhenItsConnectionEnds: a small
// request frame read before its room was taken (OverloadPause), whose
// connection then ended while it waited, vanished uncounted: neither
// received nor dropped, though it had arrived (the cancels of such a
// frame are counted as received).
func TestASmallFrameReadBeforeItsRoomIsCountedWhenItsConnectionEnds(t *testing.T) {
	const (
		verbHold  transport.Verb = 232
		verbQuick transport.Verb = 233
	)
	outbound := transport.Limits{PerConnection: 8 << 20, PerPeer: 16 << 20, Node: 32 << 20}
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
		cfg.Memory.Outbound = outbound
		cfg.Memory.InboundOverload = transport.OverloadPause
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	var holding atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	n2.Handle(verbHold, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		holding.Add(1)
		<-release
		return nil, nil
	}))
	var ran atomic.Int64
	n2.Handle(verbQuick, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		ran.Add(1)
		return nil, nil
	}))
	var calls sync.WaitGroup
	defer calls.Wait()
	defer releaseOnce.Do(func() { close(release) })
	for range 3 {
		calls.Go(func() { _, _ = n1.Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbHold, make([]byte, 250<<10)) })
	}
	waitFor(t, 10*time.Second, "n1's room at n2 held by its large requests", func() bool { return holding.Load() == 3 })
	require.NoError(t, n2.SetLimits(outbound, transport.Limits{PerConnection: 4 << 20, PerPeer: 600 << 10, Node: 8 << 20}))
	small := func() (received, dropped uint64) {
		for _, s := range n2.Stats().Conns {
			if s.Peer == c.ID(0) && s.Lane == routing.Small {
				received += s.MessagesReceived
				for _, d := range s.DroppedInbound {
					dropped += d
				}
			}
		}
		return received, dropped
	}

	// n1's small lane, written by hand: one request, read, waits for room;
	// then the connection ends.
	conn := dialAs(n2.Addr().String(), string(c.ID(0)), routing.Small)
	require.NotNil(t, conn)
	_, err := conn.Write(requestFrame(1, verbQuick, []byte("q")))
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "n2's reader waiting for the request's room", func() bool {
		return n2.Stats().InboundWaiters == 1
	})
	conn.Close()
	waitFor(t, 10*time.Second, "the connection gone at n2", func() bool {
		return n2.Stats().InboundWaiters == 0
	})
	releaseOnce.Do(func() { close(release) })
	waitFor(t, 10*time.Second, "the request counted once, received or dropped", func() bool {
		r, d := small()
		return r+d == 1
	})
	require.Zero(t, ran.Load(), "its connection ended before it started")
}

// TestARunningRequestsContextEndsWithItsConnection: a request's handler
// whose connection ended kept its context for as long as the request's
// deadline, and for ever without one: its caller had failed it
// (ErrConnectionReset) and its answer had nowhere to go, yet a handler
// waiting on its context ran on, holding its frame's room, which the
// peer's later connections then went without.
func TestARunningRequestsContextEndsWithItsConnection(t *testing.T) {
	const verbWait transport.Verb = 234
	c := newCluster(t, 2, nil)
	n2 := c.Nodes[1]
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	n2.Handle(verbWait, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("still running 10 s after its connection ended")
		}
		return nil, nil
	}))
	conn := dialAs(n2.Addr().String(), string(c.ID(0)), routing.Small)
	require.NotNil(t, conn)
	_, err := conn.Write(requestFrame(1, verbWait, []byte("q"))) // no deadline
	require.NoError(t, err)
	within(t, started, 10*time.Second, "the handler to start")
	conn.Close()
	require.ErrorIs(t, within(t, ended, 20*time.Second, "the handler to return"), context.Canceled)
}
