package transport_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestAMessageLeftBehindByASegmentedWriteDoesNotWaitAgain: a message
// that arrived during a coalescing wait, but in the queue's next segment
// (the write carries one segment, 512 KiB at most), is written at once
// after that write. It waited a second window of its own: queued half a
// window into a Fixed wait, it went out a window and a half later, past
// the longest the strategy ever asks a message to wait.
func TestAMessageLeftBehindByASegmentedWriteDoesNotWaitAgain(t *testing.T) {
	const window = 100 * time.Millisecond
	inBubble(t, 20*time.Second, func(t *testing.T) {
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
			cfg.Telemetry.DisableSocketMeasurement = true
			cfg.Lanes.LargeThreshold = transport.MaxLargeThreshold // 200 KiB messages go on the small lane
			cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
				if lane == routing.Small {
					return coalescing.NewFixed(window)
				}
				return coalescing.NewDisabled()
			}
		}})
		require.NoError(t, err)
		defer c.Close()
		type arrival struct {
			size int
			at   time.Time
		}
		delivered := make(chan arrival, 8)
		c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
			delivered <- arrival{len(m.Payload), time.Now()}
			return nil, nil
		}))
		ctx := context.Background()
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, []byte("x")))
		synctest.Wait() // connected; the writer waits out its window
		time.Sleep(window / 2)
		// Three messages of 200 KiB: with the first they fill more than a
		// segment, and they are fewer than Fixed's EnoughMessages.
		sent := time.Now()
		for range 3 {
			require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, make([]byte, 200<<10)))
		}
		for range 4 {
			a := <-delivered
			if a.size > 1 {
				assert.LessOrEqual(t, a.at.Sub(sent), window, "a %d-byte message waited longer than the window", a.size)
			}
		}
	})
}
