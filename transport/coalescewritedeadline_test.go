package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestACoalescingWaitIsNotChargedToTheWrite: Timeouts.Write bounds one
// write, not the coalescing wait before it. The write deadline was set
// before the wait, so a window as long as Timeouts.Write or longer left
// the write a deadline already past: every write that waited out the
// window failed, to a peer that read everything, its messages dropped
// as reset and its connection closed.
func TestACoalescingWaitIsNotChargedToTheWrite(t *testing.T) {
	inBubble(t, 20*time.Second, func(t *testing.T) {
		const window = time.Second
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
			cfg.Timeouts.Write = 500 * time.Millisecond
			cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
				if lane == routing.Small {
					return coalescing.NewFixed(window)
				}
				return coalescing.NewDisabled()
			}
		}})
		require.NoError(t, err)
		defer c.Close()
		delivered := make(chan time.Time, 1)
		c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
			delivered <- time.Now()
			return nil, nil
		}))
		start := time.Now()
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
		select {
		case at := <-delivered:
			assert.Equal(t, window, at.Sub(start), "written as the window ran out")
		case <-time.After(10 * time.Second):
			s := laneStats(t, c.Nodes[0], "n2", routing.Small)
			t.Fatalf("not delivered: %d dropped as reset, %d connections made",
				s.Dropped[transport.ReasonConnectionReset], s.Connects)
		}
	})
}
