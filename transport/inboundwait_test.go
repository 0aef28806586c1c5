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
	"github.com/internode/internode/transport/transporttest"
)

// heldRoom is two nodes, n1's room at n2 held beyond its limit by three
// large requests whose handlers wait for release (OverloadPause): a small
// frame of n1's then waits for room. quick is the handler of verbQuick,
// which counts its runs in ran.
type heldRoom struct {
	c       *transporttest.Cluster
	n1, n2  *transport.Transport
	ran     atomic.Int64
	release func()
}

func newHeldRoom(t *testing.T, verbHold, verbQuick transport.Verb, answer []byte) *heldRoom {
	t.Helper()
	outbound := transport.Limits{PerConnection: 8 << 20, PerPeer: 16 << 20, Node: 32 << 20}
	h := &heldRoom{}
	h.c = newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
		cfg.Memory.Outbound = outbound
		cfg.Memory.InboundOverload = transport.OverloadPause
	})
	h.n1, h.n2 = h.c.Nodes[0], h.c.Nodes[1]
	var holding atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	h.release = func() { once.Do(func() { close(release) }) }
	h.n2.Handle(verbHold, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		holding.Add(1)
		<-release
		return nil, nil
	}))
	h.n2.Handle(verbQuick, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		h.ran.Add(1)
		return answer, nil
	}))
	var calls sync.WaitGroup
	t.Cleanup(func() { h.release(); calls.Wait() }) // before the cluster closes
	for range 3 {
		calls.Go(func() {
			_, _ = h.n1.Request(ctxTimeout(t, 30*time.Second), h.c.ID(1), verbHold, make([]byte, 250<<10))
		})
	}
	waitFor(t, 10*time.Second, "n1's room at n2 held by its large requests", func() bool { return holding.Load() == 3 })
	// What it holds is now beyond its limit: nothing more of its fits.
	require.NoError(t, h.n2.SetLimits(outbound, transport.Limits{PerConnection: 4 << 20, PerPeer: 600 << 10, Node: 8 << 20}))
	return h
}

// small sums n2's small-lane counters for n1: throttled, received and
// dropped messages, and those dropped as expired.
func (h *heldRoom) small() (throttled, received, dropped, expired uint64) {
	for _, s := range h.n2.Stats().Conns {
		if s.Peer == h.c.ID(0) && s.Lane == routing.Small {
			throttled += s.Throttled
			received += s.MessagesReceived
			for _, d := range s.DroppedInbound {
				dropped += d
			}
			expired += s.DroppedInbound[transport.ReasonExpired]
		}
	}
	return throttled, received, dropped, expired
}

// TestASmallFrameReadBeforeItsRoomExpiresFromItsArrival: under
// OverloadPause a small request frame that finds no room is read first
// (for the cancels in it), then waits for its room. Its TTL started when
// it was read; the reader stamped its arrival only once the room came, so
// a request whose caller had long given up (its deadline passed, and no
// cancel is sent for that) still ran its handler, with a deadline as far
// past the wait as its TTL.
func TestASmallFrameReadBeforeItsRoomExpiresFromItsArrival(t *testing.T) {
	const verbHold, verbQuick transport.Verb = 230, 231
	h := newHeldRoom(t, verbHold, verbQuick, []byte("late"))
	n1, c := h.n1, h.c

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
		throttled, _, _, _ := h.small()
		return throttled == 1
	})
	// The request arrived before now, with at most ttl left: n2's deadline
	// for it is at most ttl from now. Its caller's came a little earlier
	// (by the time the request took to arrive).
	waiting := time.Now()
	err := within(t, failed, 10*time.Second, "the request to fail at its deadline")
	require.True(t, errors.Is(err, context.DeadlineExceeded), "request: %v", err)
	time.Sleep(time.Until(waiting.Add(ttl)))

	// The room comes back: the request, past its deadline, must be dropped
	// as expired, not run.
	h.release()
	waitFor(t, 10*time.Second, "the late request dropped or run", func() bool {
		_, _, _, expired := h.small()
		return h.ran.Load() > 0 || expired > 0
	})
	require.Zero(t, h.ran.Load(), "a request past its deadline ran its handler")
}

// TestASmallFrameReadBeforeItsRoomIsCountedWhenItsConnectionEnds: a small
// request frame read before its room was taken (OverloadPause), whose
// connection then ended while it waited, vanished uncounted: neither
// received nor dropped, though it had arrived (the cancels of such a
// frame are counted as received).
func TestASmallFrameReadBeforeItsRoomIsCountedWhenItsConnectionEnds(t *testing.T) {
	const verbHold, verbQuick transport.Verb = 232, 233
	h := newHeldRoom(t, verbHold, verbQuick, nil)
	n2, c := h.n2, h.c

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
	h.release()
	waitFor(t, 10*time.Second, "the request counted once, received or dropped", func() bool {
		_, received, dropped, _ := h.small()
		return received+dropped == 1
	})
	require.Zero(t, h.ran.Load(), "its connection ended before it started")
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
	// Its answer, with nowhere to go, ends as every response does: dropped
	// with its connection, and counted.
	waitFor(t, 10*time.Second, "the answer counted dropped with its connection", func() bool {
		return n2.Stats().Total().Dropped[transport.ReasonConnectionReset] == 1
	})
}
