package transport_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// inBubble runs f in a synctest bubble, failing the test if the bubble has
// not ended after limit of real time: a goroutine that never blocks (a
// loop waiting for the clock to move) holds a bubble's clock still, so
// such a test would otherwise hang.
func inBubble(t *testing.T, limit time.Duration, f func(t *testing.T)) {
	t.Helper()
	if strings.Contains(os.Getenv("GODEBUG"), "asynctimerchan=1") {
		// .ci/run runs the request tests under the old timers too.
		t.Skip("testing/synctest needs the timers of Go 1.23 and later (asynctimerchan=0)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		synctest.Test(t, f)
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("the bubble did not end within %v of real time: its clock stood still", limit)
	}
}

// startBubbleCluster starts two in-memory nodes whose Small lanes use
// strategy (the others never wait), with a handler on n2 that reports
// when each message of verbData arrived.
func startBubbleCluster(t *testing.T, strategy func() coalescing.Strategy) (*transporttest.Cluster, chan time.Time) {
	c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
		cfg.Telemetry.DisableSocketMeasurement = true
		cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
			if lane == routing.Small {
				return strategy()
			}
			return coalescing.NewDisabled()
		}
	}})
	require.NoError(t, err)
	delivered := make(chan time.Time, 16)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		delivered <- time.Now()
		return nil, nil
	}))
	return c, delivered
}

// TestCoalescingWaitEndsInSynctestBubble: a coalescing wait ends at its
// deadline on a fake clock too. Its last microseconds were spent in a
// loop that yielded and read the clock until the deadline passed; in a
// testing/synctest bubble, whose clock moves only while every goroutine
// is blocked, that loop held the clock still and never ended, and any
// test of code on top of the transport that made a strategy wait hung.
func TestCoalescingWaitEndsInSynctestBubble(t *testing.T) {
	inBubble(t, 20*time.Second, func(t *testing.T) {
		const window = 200 * time.Microsecond
		c, delivered := startBubbleCluster(t, func() coalescing.Strategy { return coalescing.NewFixed(window) })
		defer c.Close()
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
		synctest.Wait() // connected; the writer waits out its window
		start := time.Now()
		at := <-delivered
		assert.Equal(t, window, at.Sub(start), "delivered as the window ran out, on the fake clock exactly")
	})
}

// TestSetCoalescingEndsAWaitInProgress: a strategy changed at run time
// rules the wait in progress too. A writer waiting out a 1 s Fixed
// window went on waiting for it after SetCoalescing(Disabled), until its
// deadline or the next message: a connection switched off coalescing
// because its latency hurt held what it had queued for up to a window.
func TestSetCoalescingEndsAWaitInProgress(t *testing.T) {
	inBubble(t, 20*time.Second, func(t *testing.T) {
		c, delivered := startBubbleCluster(t, func() coalescing.Strategy { return coalescing.NewFixed(time.Second) })
		defer c.Close()
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
		synctest.Wait() // connected; the writer waits out its window
		start := time.Now()
		c.Nodes[0].SetCoalescing(func(routing.Lane) coalescing.Strategy { return coalescing.NewDisabled() })
		at := <-delivered
		assert.Zero(t, at.Sub(start), "written as soon as the strategy changed")
	})
}

// TestCoalescingFactoryMayReturnNil: a strategy factory that returns nil
// for a lane (as one that only means to set the Small lane's might, for
// the others) gets that lane's default strategy, at New and at
// SetCoalescing alike. The writer called the nil strategy and the
// process panicked at the first message.
func TestCoalescingFactoryMayReturnNil(t *testing.T) {
	onlyLarge := func(lane routing.Lane) coalescing.Strategy {
		if lane == routing.Large {
			return coalescing.NewFixed(time.Millisecond)
		}
		return nil
	}
	inBubble(t, 20*time.Second, func(t *testing.T) {
		c, delivered := startBubbleCluster(t, func() coalescing.Strategy { return nil })
		defer c.Close()
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
		<-delivered
		assert.Equal(t, coalescing.NameAdaptive, laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing.Strategy, "the Small lane's default")

		c.Nodes[0].SetCoalescing(onlyLarge)
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
		<-delivered
		assert.Equal(t, coalescing.NameAdaptive, laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing.Strategy, "the Small lane's default")
	})
}

// TestACoalescingWaitDoesNotOutlastAQueuedDeadline: a writer waiting to
// coalesce writes at once when a queued message's deadline would pass
// before its wait ends. It waited out the strategy's window whatever the
// messages' deadlines, and a message with less time left than the window
// (a request near its timeout, a Send with a short context) expired in
// the queue, counted as expired, when writing it at once would have
// delivered it.
func TestACoalescingWaitDoesNotOutlastAQueuedDeadline(t *testing.T) {
	const window, ttl = 100 * time.Millisecond, 10 * time.Millisecond
	sendWithin := func(t *testing.T, n *transport.Transport, to cluster.NodeID, ttl time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), ttl)
		defer cancel()
		require.NoError(t, n.Send(ctx, to, verbData, []byte("x")))
	}
	awaitDelivery := func(t *testing.T, delivered chan time.Time, since time.Time) {
		t.Helper()
		select {
		case at := <-delivered:
			assert.Zero(t, at.Sub(since), "written at once, not after the window")
		case <-time.After(time.Second):
			t.Fatal("not delivered: it expired in the queue while the writer waited to coalesce")
		}
	}
	t.Run("queued when the wait begins", func(t *testing.T) {
		inBubble(t, 20*time.Second, func(t *testing.T) {
			c, delivered := startBubbleCluster(t, func() coalescing.Strategy { return coalescing.NewFixed(window) })
			defer c.Close()
			require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
			<-delivered // connected
			start := time.Now()
			sendWithin(t, c.Nodes[0], c.ID(1), ttl)
			awaitDelivery(t, delivered, start)
		})
	})
	t.Run("arriving during the wait", func(t *testing.T) {
		inBubble(t, 20*time.Second, func(t *testing.T) {
			c, delivered := startBubbleCluster(t, func() coalescing.Strategy { return coalescing.NewFixed(window) })
			defer c.Close()
			require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
			<-delivered // connected
			require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("no deadline")))
			synctest.Wait() // the writer waits out its window
			start := time.Now()
			sendWithin(t, c.Nodes[0], c.ID(1), ttl)
			awaitDelivery(t, delivered, start)
			awaitDelivery(t, delivered, start)
		})
	})
}
