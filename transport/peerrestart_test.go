package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// echoRequests registers an echo handler for verbEcho on n.
func echoRequests(n *transport.Transport) {
	n.Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
}

// A request whose peer closes (a process that exits) fails at once with
// ErrConnectionReset, not when its deadline passes.
func TestRequestFailsWhenPeerCloses(t *testing.T) {
	c := newCluster(t, 2, nil)
	var entered atomic.Int32
	handleAll(c, verbBlock, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		entered.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbBlock, nil)
		errc <- err
	}()
	waitFor(t, 5*time.Second, "the handler runs", func() bool { return entered.Load() == 1 })
	closed := time.Now()
	require.NoError(t, c.Nodes[1].Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, transport.ErrConnectionReset)
		require.Less(t, time.Since(closed), promptly(time.Second))
	case <-time.After(promptly(time.Second)):
		t.Fatal("the request did not fail when its peer closed")
	}
	// A request sent just after fails as promptly: on the connection that
	// is breaking, or when the dial is refused.
	start := time.Now()
	_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbBlock, nil)
	require.ErrorIs(t, err, transport.ErrConnectionReset)
	require.Less(t, time.Since(start), promptly(time.Second))
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// A request to a peer that cannot be dialled fails with the dial's error
// after the first failed attempt, not when its deadline passes: it was
// never written, and the caller can do better than wait.
func TestRequestToUnreachablePeerFailsFast(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.Members.Add(cluster.Member{ID: "gone", Addr: closedAddr(t)})
	for range 3 { // the first attempt, then while the lane backs off
		start := time.Now()
		_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), "gone", verbEcho, nil)
		require.ErrorIs(t, err, transport.ErrConnectionReset)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		require.Less(t, time.Since(start), promptly(time.Second))
	}
	// One-way messages still wait for a connection until they expire.
	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, time.Second), "gone", verbEcho, nil))
}

// When a peer that was down returns, the next request reaches it at once,
// however long the lane had been backing off: the peer's own connection
// to this node, or the membership announcing it, ends the backoff.
func TestRequestAfterPeerReturnsSkipsBackoff(t *testing.T) {
	for _, how := range []string{"inbound connection", "membership"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Reconnect.MaxBackoff = 5 * time.Second
			})
			handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) {
				return m.Payload, nil
			})
			_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
			require.NoError(t, err)
			require.NoError(t, c.Nodes[1].Close())
			// Keep calling until the backoff has grown past a second.
			failures := func() uint64 { return c.Nodes[0].Stats().Total().ConnectFailures }
			for failures() < 10 {
				_, err := c.Nodes[0].Request(ctxTimeout(t, 3*time.Second), c.ID(1), verbEcho, nil)
				require.Error(t, err)
			}
			n2, err := c.Restart(1)
			require.NoError(t, err)
			echoRequests(n2)
			restarted := time.Now()
			switch how {
			case "inbound connection":
				require.NoError(t, n2.Send(context.Background(), c.ID(0), verbEcho, nil))
			case "membership": // declared dead, then alive again
				c.Members.Remove(c.ID(1))
				c.Members.Add(cluster.Member{ID: c.ID(1), Addr: n2.Addr().String()})
			}
			_, err = c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("x"))
			require.NoError(t, err)
			require.Less(t, time.Since(restarted), promptly(500*time.Millisecond))
		})
	}
}

// TestPeerThatHangsUpAfterTheHandshakeIsRedialledWithBackoff: a peer that
// takes the handshake and then closes the connection, again and again,
// was redialled at once each time, with no backoff: a successful dial
// reset it, and a connection's death redialled at once. With a large
// message waiting (it goes out again on the next connection while none of
// its payload was sent) that was thousands of connections a second and a
// core, for as long as the message lived. A connection that dies before
// its peer was heard on it now waits its backoff before the next dial.
func TestPeerThatHangsUpAfterTheHandshakeIsRedialledWithBackoff(t *testing.T) {
	const minBackoff = 200 * time.Millisecond
	accepts := make(chan time.Time, 64)
	addr := acceptingPeer(t, func(net.Conn) {
		select {
		case accepts <- time.Now():
		default:
		}
	}, func(net.Conn) {}) // and hangs up
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = minBackoff, 5*time.Second
	})
	c.Members.Add(cluster.Member{ID: "flaky", Addr: addr})
	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, time.Minute), "flaky", verbData, make([]byte, 200<<10)))
	next := func() time.Time {
		select {
		case at := <-accepts:
			return at
		case <-time.After(10 * time.Second):
			t.Fatal("no connection within 10 s: the lane stopped redialling")
			return time.Time{}
		}
	}
	last := next()
	for i := range 3 {
		at := next()
		// The backoff is jittered within [ceiling/2, ceiling], the
		// ceiling starting at MinBackoff and doubling.
		assert.GreaterOrEqual(t, at.Sub(last), minBackoff/2, "connection %d came after %v", i+2, at.Sub(last))
		last = at
	}
	require.NoError(t, c.Nodes[0].Close())
}

// TestMutePeerIsNotReportedUp: a peer that takes every handshake and then
// never says a word (no beat, no response) while it reads what it is
// sent. Every request written to it failed (ErrConnectionReset, after
// Keepalive), yet Health reported it up, and ReadyAll true, nearly all the
// time: each redial's handshake made the lane connected and reset its
// failures, and a connection that lived a keepalive interval reset the
// backoff, so the lane redialled at once. A lane is now connected, and its
// failures over, only once the peer is heard on it; until then a lost
// connection is redialled after the backoff.
func TestMutePeerIsNotReportedUp(t *testing.T) {
	addr := acceptingPeer(t, func(net.Conn) {}, func(conn net.Conn) {
		_, _ = io.Copy(io.Discard, conn) // and never a word back
	})
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 2 * time.Second
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = 200*time.Millisecond, time.Second
	})
	c.Members.Add(cluster.Member{ID: "mute", Addr: addr})

	stop := make(chan struct{})
	var failures atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := c.Nodes[0].Request(ctxTimeout(t, 20*time.Second), "mute", verbEcho, []byte("q"))
			if errors.Is(err, transport.ErrConnectionReset) {
				failures.Add(1)
			}
		}
	})
	defer close(stop)
	waitFor(t, 10*time.Second, "the first connection judged dead", func() bool { return failures.Load() >= 1 })

	// Sample for two more connections' lives.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var up, samples int
	states := map[transport.LaneState]int{}
	for until := time.Now().Add(2*2*time.Second + time.Second); time.Now().Before(until); <-tick.C {
		h := c.Nodes[0].Health()
		p, ok := h.Peer("mute")
		require.True(t, ok)
		samples++
		if p.Status == transport.PeerUp {
			up++
		}
		assert.False(t, h.Ready(transport.ReadyAll), "ready with a mute member")
		states[p.Lanes[routing.Small].State]++
	}
	t.Logf("health samples: %d, up %d; small lane states %v; requests failed %d", samples, up, states, failures.Load())
	assert.Zero(t, up, "a peer never heard from after its handshakes is not up")
	assert.Zero(t, states[transport.LaneConnected], "nor its lane connected")
	assert.NotZero(t, states[transport.LaneBackoff], "a connection lost before its peer was heard is redialled after the backoff")
}

// acceptingPeer listens as a peer that takes every handshake (of many
// connections, where fakeAcceptor answers one) and then does what after
// says, on a goroutine of the connection's own; accepted is called first,
// on the accept loop. It returns its address.
func acceptingPeer(t *testing.T, accepted, after func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return acceptingPeerOn(t, ln, accepted, after)
}

// acceptingPeerOn is acceptingPeer on ln, which it closes at the end.
func acceptingPeerOn(t *testing.T, ln net.Listener, accepted, after func(net.Conn)) string {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted(conn)
			wg.Go(func() {
				defer conn.Close()
				if _, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize)); err != nil {
					return
				}
				_, _ = conn.Write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion}))
				after(conn)
			})
		}
	})
	return ln.Addr().String()
}

// TestABackoffOwedBeforeAnIdleSpellIsNotSleptAfterIt: a connection that
// died before its peer was heard on it makes the lane's next dial wait its
// backoff. The lane then had nothing to send, and its writer exited; the
// next message, sent long after that backoff had passed, still waited a
// whole backoff before its dial, though nothing had been dialled since:
// a request to a peer back for minutes could time out undialled. The
// next dial now waits only what is left of the backoff. It runs in a
// synctest bubble over the in-memory network: the idle spell and the
// dial's delay are measured on the fake clock, exactly.
func TestABackoffOwedBeforeAnIdleSpellIsNotSleptAfterIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const backoff = 3 * time.Second
		network := transporttest.NewNetwork()
		defer network.Close()
		ln, err := network.Host("flaky").Listen("tcp", "flaky:1")
		require.NoError(t, err)
		accepts := make(chan time.Time, 64)
		addr := acceptingPeerOn(t, ln, func(net.Conn) { accepts <- time.Now() }, func(conn net.Conn) {
			_, _ = conn.Read(make([]byte, 1)) // the message was written: hang up unheard
		})
		cfg := transporttest.Config("n1", "test", cluster.NewStatic(cluster.Member{ID: "flaky", Addr: addr}))
		network.Host("n1").Configure(&cfg)
		cfg.Reconnect.MinBackoff, cfg.Reconnect.MaxBackoff = backoff, backoff
		cfg.Telemetry.DisableSocketMeasurement = true
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		tr.Start()
		defer tr.Close()

		require.NoError(t, tr.Send(context.Background(), "flaky", verbData, []byte("a")))
		<-accepts
		// Longer than the backoff owed for the connection's death: the
		// lane is idle all along.
		time.Sleep(backoff + backoff/4)
		sent := time.Now()
		require.NoError(t, tr.Send(context.Background(), "flaky", verbData, []byte("b")))
		at := <-accepts
		assert.Less(t, at.Sub(sent), backoff/3, "the second message waited for a backoff already served")
	})
}
