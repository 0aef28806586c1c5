package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/transport"
)

// windowEveryTime is a strategy of the simplest kind: it asks for its
// window whenever something is pending. Each answer is within its
// window, as Strategy.Wait requires, but unlike this package's strategies
// it does not cap the answers until the next Flushed by the first one's
// deadline.
type windowEveryTime struct{ window time.Duration }

func (s windowEveryTime) Observe(time.Time, int) {}
func (s windowEveryTime) Wait(_ time.Time, pending, _ int) time.Duration {
	if pending <= 0 {
		return 0
	}
	return s.window
}
func (s windowEveryTime) Flushed(time.Time, int, int, time.Duration, time.Duration) {}
func (s windowEveryTime) Stats() coalescing.Stats {
	return coalescing.Stats{Strategy: "window-every-time"}
}

// TestACoalescingWaitEndsUnderSteadyTraffic: the writer asks its strategy
// again at each arrival and the answer replaces what is left of the wait,
// so a strategy that answers its window each time (200 µs) extended the
// wait at every message while they came more often than that: a steady
// sender's messages (one every 100 µs for 2.5 s) were none of them
// written until it stopped, the lane stalled for as long as the traffic
// lasted. One write's wait now ends coalescing.WindowLimit (1 s, "a wait
// this long is a stall") after it began, whatever the strategy answers.
func TestACoalescingWaitEndsUnderSteadyTraffic(t *testing.T) {
	const verbSteady transport.Verb = 171
	inBubble(t, 60*time.Second, func(t *testing.T) {
		c, _ := startBubbleCluster(t, func() coalescing.Strategy { return windowEveryTime{200 * time.Microsecond} })
		defer c.Close()
		var firstAt atomic.Int64
		c.Nodes[1].Handle(verbSteady, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
			firstAt.CompareAndSwap(0, time.Now().UnixNano())
			return nil, nil
		}))
		start := time.Now()
		for time.Since(start) < 2500*time.Millisecond {
			require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbSteady, []byte("x")))
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(10 * time.Millisecond) // the bubble's clock: the last wait ends
		synctest.Wait()
		require.NotZero(t, firstAt.Load(), "delivered once the sender stopped")
		first := time.Unix(0, firstAt.Load()).Sub(start)
		assert.LessOrEqual(t, first, coalescing.WindowLimit+time.Millisecond,
			"the first message written within WindowLimit of its wait's start, not after the traffic stopped")
	})
}
