package transport_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestAPeerWithoutRoomIsNotRedialledForEachConnectionItOpens: n2 has room
// for one inbound connection (Security.MaxConns), which a stream of n1's
// holds, so it refuses n1's lane with Busy; n1 backs off. n2 goes
// on opening connections of its own to n1, a stream each, a hundred a
// second. Each one was taken for the peer "seen to be back": n1's lane
// dialled again at once and started its backoff afresh, hundreds of
// handshakes a second against a peer that had just said it had no room.
// A peer that answered the last dial is not back when it connects, and
// the lane keeps its backoff: a handful of dials in two seconds.
func TestAPeerWithoutRoomIsNotRedialledForEachConnectionItOpens(t *testing.T) {
	inBubble(t, 60*time.Second, func(t *testing.T) {
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
			cfg.Reconnect.MinBackoff = transport.DefaultReconnectMinBackoff
			cfg.Reconnect.MaxBackoff = transport.DefaultReconnectMaxBackoff
			if i == 1 {
				cfg.Security.MaxConns, cfg.Security.MaxConnsPerPeer = 1, 1
			}
		}})
		require.NoError(t, err)
		defer c.Close()
		echoStreams(c)
		n1, n2 := c.Nodes[0], c.Nodes[1]

		// n2's one connection (a connection of its own: smux's session is
		// not at home in a bubble).
		s, err := n1.OpenStream(context.Background(), c.ID(1), verbRepair, transport.OwnConnection())
		require.NoError(t, err)
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, n1.Send(ctx, c.ID(1), verbEcho, []byte("x")))
		synctest.Wait() // refused: the lane backs off
		before := n1.Stats().Total().ConnectFailures
		require.Positive(t, before, "n2 refused the lane")

		for range 200 {
			st, err := n2.OpenStream(context.Background(), c.ID(0), verbRepair, transport.OwnConnection())
			require.NoError(t, err)
			require.NoError(t, st.Close())
			time.Sleep(10 * time.Millisecond) // the bubble's clock: no real time passes
		}
		failures := n1.Stats().Total().ConnectFailures - before
		t.Logf("%d dials refused in 2 s", failures)
		// 50 ms doubling to 5 s, jittered down to half: at most 8 dials fit.
		assert.LessOrEqual(t, failures, uint64(8), "the lane redialled a peer without room at each of its connections")
	})
}

// TestARequestToAPeerReachableOnlyOneWayFailsAtTheFailedDial: n1's dials
// to n2 hang (the SYN is dropped: a firewall in front of n2's address,
// say), while n2 reaches n1 and opens a stream to it every 300 ms. Each
// of n2's connections is n2 seen again, and cut n1's hung dial short to
// start afresh, which is no failure: the dial never failed, the request
// waited for its deadline, and the lane counted no failure. A sighting
// now restarts a hung dial once, and the dial that follows runs its
// course: the request fails with ErrConnectionReset at its failure, as
// Request's doc says, within Timeouts.Dial of the restart.
func TestARequestToAPeerReachableOnlyOneWayFailsAtTheFailedDial(t *testing.T) {
	inBubble(t, 60*time.Second, func(t *testing.T) {
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
			if i == 0 {
				cfg.Dialer = dialerFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
					<-ctx.Done() // the SYN is lost: the dial ends at Timeouts.Dial
					return nil, ctx.Err()
				})
			}
		}})
		require.NoError(t, err)
		defer c.Close()
		echoStreams(c)
		n1, n2 := c.Nodes[0], c.Nodes[1]
		stop := make(chan struct{})
		var streams sync.WaitGroup
		streams.Go(func() { // n2 reaches n1
			for {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if st, err := n2.OpenStream(context.Background(), c.ID(0), verbRepair, transport.OwnConnection()); err == nil {
					st.Close()
				}
			}
		})
		defer streams.Wait()
		defer close(stop)

		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = n1.Request(ctx, c.ID(1), verbEcho, []byte("x"))
		took := time.Since(start)
		t.Logf("the request ended after %v: %v", took, err)
		require.ErrorIs(t, err, transport.ErrConnectionReset)
		assert.LessOrEqual(t, took, 2*transport.DefaultDialTimeout, "failed at a failed dial, not at its deadline")
		assert.Positive(t, n1.Stats().Total().ConnectFailures)
	})
}
