package transport_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestAnUrgentReaderWaitingForRoomIsNotRequeuedByAnotherPeersAllowance:
// n1 fills its room at n2, then sends two gossip messages on the urgent
// lane: the first takes n1's small urgent frame beyond the limits and its
// handler is held; the second's reader waits for room. Another peer, b,
// then has a small urgent frame taken beyond the limits and given back
// at once. That release is no business of n1's reader — n1's own
// allowance is still held — yet it woke the reader, which withdrew its
// waiter from the budget and queued a new one at the tail: a second
// pause counted (Throttled) for one pause, reading never having resumed,
// and its first-come-first-served place given up to whatever queued
// behind it meanwhile.
func TestAnUrgentReaderWaitingForRoomIsNotRequeuedByAnotherPeersAllowance(t *testing.T) {
	const (
		verbScan   transport.Verb = 220
		verbGossip transport.Verb = 221
		verbPong   transport.Verb = 222
		verbHold   transport.Verb = 223
		requests                  = 20
	)
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 256 << 10
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 1 << 20, Node: 8 << 20}
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbGossip: routing.Urgent}
	})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	var started atomic.Int64
	n2.Handle(verbScan, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	gossipStarted := make(chan struct{}, 2)
	slowGossip := make(chan struct{})
	var slowOnce sync.Once
	defer slowOnce.Do(func() { close(slowGossip) })
	var gossiped atomic.Int64
	n2.Handle(verbGossip, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		gossipStarted <- struct{}{}
		<-slowGossip
		gossiped.Add(1)
		return nil, nil
	}))
	var holding atomic.Int64
	release := make(chan struct{})
	defer close(release)
	n2.Handle(verbHold, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		holding.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	}))
	var ponged atomic.Int64
	n2.Handle(verbPong, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		ponged.Add(1)
		return nil, nil
	}))
	ctx, giveUp := context.WithTimeout(context.Background(), 30*time.Second)
	defer giveUp()
	var calls sync.WaitGroup
	defer calls.Wait()
	defer giveUp()
	for range requests {
		calls.Go(func() { _, _ = n1.Request(ctx, c.ID(1), verbScan, make([]byte, 60<<10)) })
	}
	waitFor(t, 10*time.Second, "n2 full, its small-lane reader waiting for room", func() bool {
		s := stage(n2, verbScan)
		return n2.Stats().InboundWaiters == 1 && s.Queued == 0 && int64(s.Active) == started.Load() && s.Active > 0
	})
	urgentThrottled := func() uint64 {
		for _, s := range n2.Stats().Conns {
			if s.Peer == c.ID(0) && s.Lane == routing.Urgent {
				return s.Throttled
			}
		}
		return 0
	}

	require.NoError(t, n1.Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbGossip, []byte("one")))
	within(t, gossipStarted, 10*time.Second, "the first gossip message handled on a full node")
	require.NoError(t, n1.Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbGossip, []byte("two")))
	waitFor(t, 10*time.Second, "n2's urgent reader waiting for the second frame's room", func() bool {
		return n2.Stats().InboundWaiters == 2 && urgentThrottled() == 1
	})

	// b fills its own room with requests of 250 KiB (the fourth waits), then its
	// small urgent frame finds no room: taken beyond the limits (b's
	// allowance), handled, given back.
	c.Members.Add(cluster.Member{ID: "b", Addr: "127.0.0.1:1"})
	stop := make(chan struct{})
	var open sync.WaitGroup
	defer func() { close(stop); open.Wait() }()
	bulk := dialAs(n2.Addr().String(), "b", routing.Small)
	require.NotNil(t, bulk)
	open.Go(func() { holdOpen(bulk, stop) })
	for i := range 4 {
		_, err := bulk.Write(requestFrame(uint64(i+1), verbHold, make([]byte, 250<<10)))
		require.NoError(t, err)
	}
	waitFor(t, 10*time.Second, "b's room full, its fourth request waiting", func() bool {
		return holding.Load() == 3 && n2.Stats().InboundWaiters == 3
	})
	held := n2.Stats().InboundHeld
	conn := dialAs(n2.Addr().String(), "b", routing.Urgent)
	var err error
	require.NotNil(t, conn)
	open.Go(func() { holdOpen(conn, stop) })
	msg := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbPong), PayloadLength: 4})
	msg = append(msg, "pong"...)
	_, err = conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...))
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "b's frame handled and given back", func() bool {
		return ponged.Load() == 1 && n2.Stats().InboundHeld == held
	})

	// n1's first gossip message is done: its reader takes the allowance.
	slowOnce.Do(func() { close(slowGossip) })
	waitFor(t, 10*time.Second, "both gossip messages handled", func() bool { return gossiped.Load() == 2 })
	require.EqualValues(t, 1, urgentThrottled(), "n1's urgent lane paused once, for the second gossip frame's room")
}
