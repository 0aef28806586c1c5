package transport_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestHealthOfAPeerBackFromARestartIsUp: n1 has used its large lane to n2
// (its connection stays open for Timeouts.Idle), then n2 restarts. The
// large lane's connection is lost with nothing left to send, so its writer
// goes idle with the loss on record; n1's requests on the small lane
// reconnect at once and are answered. n2 is back and talking, but Health
// reported it down for as long as nothing large was sent — for ever, for a
// node that sends nothing large — and a probe asking ReadyAll kept n1 out
// of service. Over the in-memory network in a synctest bubble: the
// settling is on the fake clock.
func TestHealthOfAPeerBackFromARestartIsUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
		}})
		require.NoError(t, err)
		defer c.Close()
		echo := transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) { return nil, nil })
		c.HandleAll(verbEcho, echo)
		n1, n2 := c.Nodes[0], c.ID(1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = n1.Request(ctx, n2, verbEcho, make([]byte, 100<<10)) // the large lane
		require.NoError(t, err)
		_, err = n1.Request(ctx, n2, verbEcho, []byte("small"))
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, transport.LaneConnected, peerHealth(t, n1, n2).Lanes[routing.Large].State, "setup")

		restarted, err := c.Restart(1)
		require.NoError(t, err)
		restarted.Handle(verbEcho, echo)
		for {
			if _, err := n1.Request(ctx, n2, verbEcho, []byte("small")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(3 * time.Second) // a few beats on the new connections
		synctest.Wait()

		h := n1.Health()
		p, _ := h.Peer(n2)
		require.Equal(t, transport.LaneConnected, p.Lanes[routing.Small].State, "setup: the small lane is back")
		require.Equal(t, transport.LaneIdle, p.Lanes[routing.Large].State, "setup: the large lane has nothing to send")
		assert.Equal(t, transport.PeerUp.String(), p.Status.String(), "n2 is back and answering: %+v", p.Lanes)
		assert.True(t, h.Ready(transport.ReadyAll), "not ready, though every peer answers")
	})
}
