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

// TestThrottledTimeCountsAPauseInProgress: n2's handler stops, the
// messages behind it take n2's inbound capacity, and the reader of n1's
// connection pauses for room that does not come. ThrottledTime (and
// internode.inbound.throttled_time, read from it) added a pause's length
// only once reading went on: a reader paused for good showed no time
// paused at all, however long it had stood, and a long pause showed as
// one jump when it ended. Run in a synctest bubble over the in-memory
// network: the pause lasts exactly as long as the fake clock says.
func TestThrottledTimeCountsAPauseInProgress(t *testing.T) {
	inBubble(t, 20*time.Second, func(t *testing.T) {
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
			cfg.Memory.Inbound = tightInbound
			cfg.Memory.MaxMessageSize = 64 << 10
		}})
		require.NoError(t, err)
		defer c.Close()
		g := newGate()
		defer g.open()
		c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			return nil, g.wait(ctx)
		}))
		payload := make([]byte, 32<<10)
		for range 2 * tightInbound.PerConnection / int64(len(payload)) {
			require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, payload))
		}
		synctest.Wait() // n2's reader paused for room
		st := laneStats(t, c.Nodes[1], "n1", routing.Small)
		require.Equal(t, uint64(1), st.Throttled, "setup: the reader paused")

		const paused = 10 * time.Second
		time.Sleep(paused)
		synctest.Wait()
		st = laneStats(t, c.Nodes[1], "n1", routing.Small)
		require.Equal(t, uint64(1), st.Throttled, "setup: the same pause")
		assert.GreaterOrEqual(t, st.ThrottledTime, paused, "a reader paused for %v", paused)
	})
}
