package transport_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestIdleRetirementUnderTraffic: lanes retire for idleness every
// millisecond while senders keep coming, paced so that many arrive as a
// lane retires. Every Send and Request succeeds, every message is
// delivered once, and the counters add up.
func TestIdleRetirementUnderTraffic(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Timeouts.Idle = time.Millisecond })
	var got atomic.Int64
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	const senders, each = 4, 150
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Duration(900+100*s) * time.Microsecond)
			defer tick.Stop()
			for i := range each {
				<-tick.C
				if i%2 == 0 {
					errs <- c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x"))
				} else {
					_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("y"))
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	waitFor(t, 10*time.Second, "all one-way messages delivered", func() bool { return got.Load() == senders*each/2 })
	waitFor(t, 10*time.Second, "all writes counted", func() bool {
		return c.Nodes[0].Stats().Total().MessagesSent == senders*each
	})
	st := c.Nodes[0].Stats().Total()
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	assert.Zero(t, dropped)
	assert.Greater(t, st.Connects, uint64(1), "lanes retired and came back")
}

// TestAnEmptyLargeMessageIsNotDeliveredTwice: a message with no payload
// on the large lane (its verb pinned there) is whole in its
// FrameLargeBegin: the receiver hands it to its handler as it grants it
// room. Here the grant is held back on the link, and the connection is
// then lost (the peer's address changes, to the same node reached
// directly). The sender took the message, begun and never granted as far
// as it knew, for one that had not reached the peer, and sent it again on
// the next connection: the handler ran twice for one Send.
func TestAnEmptyLargeMessageIsNotDeliveredTwice(t *testing.T) {
	const verbPinned transport.Verb = 231
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbPinned: routing.Large}
	})
	var got atomic.Int64
	c.Nodes[1].Handle(verbPinned, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	proxy := newPausableProxy(t, c.Nodes[1].Addr().String())
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: proxy.addr}) // n1 reaches n2 through the proxy
	large := func() transport.ConnStats { return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Large) }

	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbPinned, nil))
	waitFor(t, 5*time.Second, "the first delivered", func() bool { return got.Load() == 1 && large().MessagesSent == 1 })
	proxy.pause() // n2's grants are held on the link
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbPinned, nil))
	waitFor(t, 5*time.Second, "the second delivered", func() bool { return got.Load() == 2 })

	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: c.Nodes[1].Addr().String()}) // the connection through the proxy ends
	waitFor(t, 10*time.Second, "the second message's outcome", func() bool {
		st := large()
		return st.MessagesSent+st.Dropped[transport.ReasonConnectionReset] == 2 && st.PendingBytes == 0
	})
	// A third delivery would follow a resend's grant; give it the time
	// a round trip on loopback takes, many times over.
	assert.Never(t, func() bool { return got.Load() > 2 }, 500*time.Millisecond, 5*time.Millisecond,
		"one Send, delivered twice")
}

// TestACancelEndsWithItsRequest: a request to a peer that accepts and
// never answers the handshake (hung) is cancelled by its caller; the
// cancel is queued on the urgent lane. It had no expiry: while the peer
// stayed unreachable it waited, the lane dialling for it again and again
// and its capacity held, long after the request's deadline, past which
// there is nothing left to cancel. It now expires with its request.
func TestACancelEndsWithItsRequest(t *testing.T) {
	addr, accepted := silentListener(t)
	c := newCluster(t, 1, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Handshake = 100 * time.Millisecond
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	})
	c.Members.Add(cluster.Member{ID: "hung", Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctx, "hung", verbEcho, []byte("q"))
		errc <- err
	}()
	<-accepted // the request's lane is in its handshake
	cancel()
	require.ErrorIs(t, within(t, errc, 5*time.Second, "the request"), context.Canceled)
	waitFor(t, 5*time.Second, "the cancel's outcome, once its request's deadline passed", func() bool {
		st := laneStats(t, c.Nodes[0], "hung", routing.Urgent)
		return st.PendingMessages == 0 && st.Dropped[transport.ReasonExpired] == 1
	})
}

// TestCloseDuringADialFailsItsRequestAsClosed: Close interrupts a dial in
// progress (the peer accepts and never answers the handshake). The writer
// took the interruption for a failed dial: it counted a connect failure
// and failed the queued request with ErrConnectionReset ("cannot connect:
// context canceled") before Close could fail it as closed.
func TestCloseDuringADialFailsItsRequestAsClosed(t *testing.T) {
	addr, accepted := silentListener(t)
	c := newCluster(t, 1, func(i int, cfg *transport.Config) { cfg.Timeouts.Handshake = time.Minute })
	c.Members.Add(cluster.Member{ID: "mute", Addr: addr})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, time.Minute), "mute", verbEcho, []byte("q"))
		errc <- err
	}()
	<-accepted // the writer waits for the handshake's reply
	require.NoError(t, c.Nodes[0].Close())
	err := within(t, errc, 10*time.Second, "the request")
	require.ErrorIs(t, err, transport.ErrClosed)
	st := laneStats(t, c.Nodes[0], "mute", routing.Small)
	assert.Equal(t, uint64(1), st.Dropped[transport.ReasonClosed], "dropped %v", st.Dropped)
	assert.Zero(t, st.ConnectFailures, "a dial cut short by Close is no failure of the peer's")
}

// TestAMessageHeldToCoalesceOutlivesADeadConnection: the small lane waits
// to coalesce (a fixed window of a second) when the peer goes away; its
// back-channel reader marks the connection dead at once and wakes the
// writer. The writer waited out its window all the same and wrote the
// batch into the closed socket: the message, never written, was dropped
// as ReasonConnectionReset, where a one-way message whose connection is
// lost before it was written waits for the peer.
func TestAMessageHeldToCoalesceOutlivesADeadConnection(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
			if lane == routing.Small {
				return coalescing.NewFixed(time.Second)
			}
			return transport.DefaultCoalescing(lane)
		}
	})
	got := make(chan string, 4)
	handle := func(n *transport.Transport) {
		n.Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			got <- string(m.Payload)
			return nil, nil
		}))
	}
	handle(c.Nodes[1])
	small := func() transport.ConnStats { return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small) }
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("a")))
	require.Equal(t, "a", within(t, got, 10*time.Second, "the first message"))

	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, time.Minute), c.ID(1), verbData, []byte("b"))) // held a second
	addr := c.Nodes[1].Addr().String()
	require.NoError(t, c.Nodes[1].Close())
	waitFor(t, 10*time.Second, "n1 deals with the lost connection", func() bool {
		st := small()
		return st.Dropped[transport.ReasonConnectionReset] > 0 || st.ConnectFailures > 0
	})
	assert.Zero(t, small().Dropped[transport.ReasonConnectionReset], "a message never written, dropped as reset")

	cfg := c.Configs[1]
	cfg.ListenAddr = addr
	restarted, err := transport.New(cfg)
	require.NoError(t, err)
	handle(restarted)
	restarted.Start()
	c.Nodes[1] = restarted
	require.Equal(t, "b", within(t, got, 10*time.Second, "the held message, once n2 is back"))
}

// TestTheDialTimeoutBoundsTheConnectNotTheHandshake: Timeouts.Dial bounds
// one TCP connect and Timeouts.Handshake the handshake (Config). A peer
// whose handshake reply takes longer than Dial, well within Handshake,
// was cut off all the same: the dial's timeout ran on over the
// handshake, and the request failed with "cannot connect".
func TestTheDialTimeoutBoundsTheConnectNotTheHandshake(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Dial, cfg.Timeouts.Handshake = 200*time.Millisecond, 10*time.Second
	})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	proxy := newPausableProxy(t, c.Nodes[1].Addr().String())
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: proxy.addr})
	proxy.pause() // n2's handshake reply is held on the link
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbEcho, []byte("q"))
		errc <- err
	}()
	waitFor(t, 10*time.Second, "n2's reply held", func() bool { return proxy.held.Load() > 0 })
	release := time.AfterFunc(time.Second, proxy.resume) // after Dial, within Handshake
	defer release.Stop()
	require.NoError(t, within(t, errc, 30*time.Second, "the request"))
}
