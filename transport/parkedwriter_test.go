package transport_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// parked reports whether n's small lane to peer has its connection open
// and no writer goroutine.
func parked(n *transport.Transport, peer cluster.NodeID) bool {
	running, connected := transport.LaneWriter(n, peer, routing.Small)
	return connected && !running
}

// requireParked lets 50 ms pass in the test's bubble, past the writer's
// 10 ms linger, and requires n's small lane to peer to be parked then.
// Called only inside a synctest bubble (inBubble), as every Sleep in this
// file is: the bubble's clock moves only once every goroutine in it is
// blocked, so the sleep is exact, not a wait on the machine's load.
func requireParked(t *testing.T, n *transport.Transport, peer cluster.NodeID, why string) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	synctest.Wait()
	require.True(t, parked(n, peer), why)
}

// TestAnIdleLaneParksItsWriterAndKeepsItsConnection: a lane with nothing
// to write lets its writer goroutine go once quiet for a few milliseconds,
// its connection left open, so that an idle pair costs no writer's
// stack. The restart timer still pings: n2, whose Keepalive is 2 s,
// keeps the connection through ten seconds of silence. The next request
// starts a writer on the same connection, and it parks again.
func TestAnIdleLaneParksItsWriterAndKeepsItsConnection(t *testing.T) {
	inBubble(t, time.Minute, func(t *testing.T) {
		c := transporttest.New(t, 2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Timeouts.Keepalive = 2 * time.Second
			cfg.Timeouts.Idle = time.Minute
		}})
		c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
		n1, n2 := c.Nodes[0], c.ID(1)
		_, err := n1.Request(context.Background(), n2, verbEcho, []byte("first"))
		require.NoError(t, err)
		requireParked(t, n1, n2, "the writer parked, its connection open")

		since := time.Now()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		lane := peerHealth(t, n1, n2).Lanes[routing.Small]
		assert.Equal(t, transport.LaneConnected, lane.State, "n2 kept the connection")
		assert.False(t, lane.LastWrite.Before(since.Add(9*time.Second)), "pinged while parked: last write %v after parking",
			lane.LastWrite.Sub(since))
		assert.True(t, parked(n1, n2), "parked between the pings")
		assert.Equal(t, uint64(1), n1.Stats().Total().Connects, "connections made")

		resp, err := n1.Request(context.Background(), n2, verbEcho, []byte("second"))
		require.NoError(t, err)
		assert.Equal(t, "second", string(resp))
		assert.Equal(t, uint64(1), n1.Stats().Total().Connects, "the next request went on the same connection")
		requireParked(t, n1, n2, "it parks again")
	})
}

// TestAParkedLaneClosesAtItsIdleTimeout: a parked writer's restart timer
// is due at Timeouts.Idle, and the writer it starts closes the connection
// then, not at the next ping (a second after the last write), which was
// when it first looked.
func TestAParkedLaneClosesAtItsIdleTimeout(t *testing.T) {
	inBubble(t, time.Minute, func(t *testing.T) {
		c := transporttest.New(t, 2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Timeouts.Idle = 300 * time.Millisecond
		}})
		c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
		n1, n2 := c.Nodes[0], c.ID(1)
		_, err := n1.Request(context.Background(), n2, verbEcho, []byte("x"))
		require.NoError(t, err)
		requireParked(t, n1, n2, "the writer parked")
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		running, connected := transport.LaneWriter(n1, n2, routing.Small)
		assert.False(t, connected, "closed at Timeouts.Idle")
		assert.False(t, running, "no writer left")
	})
}

// TestAParkedWritersConnectionDyingFailsItsRequest: a request is written
// while the lane's writer is parked (by its caller's goroutine) and waits
// for its response; n2 closes. The back channel, seeing the connection
// end, starts a writer, which fails the request as reset at once — not
// at the next ping, when the restart timer would have started one.
func TestAParkedWritersConnectionDyingFailsItsRequest(t *testing.T) {
	inBubble(t, time.Minute, func(t *testing.T) {
		c := transporttest.New(t, 2, transporttest.Options{InMemory: true})
		entered := make(chan struct{})
		c.HandleAll(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			if string(m.Payload) == "hang" {
				close(entered)
				<-ctx.Done()
			}
			return m.Payload, nil
		}))
		n1, n2 := c.Nodes[0], c.ID(1)
		_, err := n1.Request(context.Background(), n2, verbEcho, []byte("x"))
		require.NoError(t, err)
		requireParked(t, n1, n2, "the writer parked")

		failed := make(chan error, 1)
		go func() {
			_, err := n1.Request(context.Background(), n2, verbEcho, []byte("hang"))
			failed <- err
		}()
		<-entered
		requireParked(t, n1, n2, "the writer parked with the request awaiting its response")
		start := time.Now()
		require.NoError(t, c.Nodes[1].Close())
		err = <-failed
		assert.ErrorIs(t, err, transport.ErrConnectionReset)
		assert.Less(t, time.Since(start), 100*time.Millisecond, "failed when the connection ended")
	})
}
