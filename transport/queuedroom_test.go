package transport_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestCancelledQueuedRequestsGiveBackTheirRoom: a slow handler holds its
// verb's only turn (a stage of one, or the verb's ordered queue), and
// requests queued behind it fill n2's inbound room for n1's small lane,
// reading paused (OverloadPause) or later requests refused
// (OverloadReject). Their callers give them up. The room they held must
// come back as their cancels arrive, not once the slow handler returns and
// their turns come: a request to another verb on the same connection is
// answered while the slow handler still runs, each given-up request is
// counted once, as cancelled, and none of them is handled.
func TestCancelledQueuedRequestsGiveBackTheirRoom(t *testing.T) {
	const (
		verbSlow  transport.Verb = 241
		verbQuick transport.Verb = 242
		queued                   = 32 // of 32 KiB: twice n2's room for the connection
	)
	for _, tc := range []struct {
		name   string
		how    transport.HandleOption
		policy transport.OverloadPolicy
	}{
		{"stage/pause", transport.Concurrent(1), transport.OverloadPause},
		{"stage/reject", transport.Concurrent(1), transport.OverloadReject},
		{"ordered/pause", transport.Ordered(), transport.OverloadPause},
		{"ordered/reject", transport.Ordered(), transport.OverloadReject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Memory.MaxMessageSize = 64 << 10
				if i == 1 {
					// Room for a whole frame beside the slow request's: a
					// frame that does not fit waits for the slow handler,
					// whose requests it may carry or not.
					cfg.Memory.Inbound = transport.Limits{PerConnection: 512 << 10, PerPeer: 1 << 20, Node: 2 << 20}
					cfg.Memory.InboundOverload = tc.policy
				}
			})
			g := newGate()
			defer g.open()
			var mu sync.Mutex
			var handled []int
			c.Nodes[1].Handle(verbSlow, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
				mu.Lock()
				handled = append(handled, len(m.Payload))
				mu.Unlock()
				return nil, g.wait(context.Background()) // holds its turn until the gate opens
			}), tc.how)
			c.Nodes[1].Handle(verbQuick, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
				return []byte("ok"), nil
			}))
			handledCount := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(handled)
			}
			n1, n2, to := c.Nodes[0], c.Nodes[1], c.ID(1)

			slow := make(chan error, 1)
			go func() {
				_, err := n1.Request(ctxTimeout(t, time.Minute), to, verbSlow, []byte("slow"))
				slow <- err
			}()
			waitFor(t, 10*time.Second, "the slow handler running", func() bool { return handledCount() == 1 })

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			results := make(chan error, queued)
			for range queued {
				go func() {
					_, err := n1.Request(ctx, to, verbSlow, make([]byte, 32<<10))
					results <- err
				}()
			}
			switch tc.policy {
			case transport.OverloadPause:
				waitFor(t, 10*time.Second, "n2's reader paused for room", func() bool { return n2.Stats().InboundWaiters == 1 })
			case transport.OverloadReject:
				// Those beyond the room are refused; the rest wait behind the
				// slow handler.
				waitFor(t, 10*time.Second, "n2's room full", func() bool {
					return laneStats(t, n2, "n1", routing.Small).DroppedInbound[transport.ReasonOverloaded] > 0
				})
			}
			cancel()
			for range queued {
				err := within(t, results, 10*time.Second, "a given-up request's caller")
				if !errors.Is(err, context.Canceled) && (tc.policy == transport.OverloadPause || !errors.Is(err, transport.ErrOverloaded)) {
					t.Errorf("a given-up request: %v", err)
				}
			}

			// The slow handler still runs. Each given-up request is
			// withdrawn by n1 unwritten, or dropped by n2 as cancelled (or
			// refused as overloaded before it was given up), and the room
			// they held is back: a request behind them is answered.
			var withdrawn uint64
			var in [transport.NumReasons]uint64
			if !assert.Eventually(t, func() bool {
				withdrawn = laneStats(t, n1, "n2", routing.Small).Dropped[transport.ReasonCanceled]
				in = laneStats(t, n2, "n1", routing.Small).DroppedInbound
				return withdrawn+in[transport.ReasonCanceled]+in[transport.ReasonOverloaded] == queued
			}, 10*time.Second, time.Millisecond) {
				t.Fatalf("%d given-up requests, the slow handler still running: %d withdrawn by n1, %d dropped by n2 as cancelled, %d refused (n2 holds %d bytes)",
					queued, withdrawn, in[transport.ReasonCanceled], in[transport.ReasonOverloaded], n2.Stats().InboundHeld)
			}
			if tc.name[:5] == "stage" {
				assert.Zero(t, stage(n2, verbSlow).Queued, "none left in the stage")
			}
			quick := make(chan error, 1)
			go func() {
				_, err := n1.Request(ctxTimeout(t, time.Minute), to, verbQuick, make([]byte, 32<<10))
				quick <- err
			}()
			assert.NoError(t, within(t, quick, 5*time.Second, "a request behind the given-up ones, the slow handler still running"),
				"a request behind the given-up ones (n2 holds %d bytes)", n2.Stats().InboundHeld)
			assert.Equal(t, 1, handledCount(), "no given-up request handled")

			g.open()
			require.NoError(t, within(t, slow, 10*time.Second, "the slow request"))
			waitFor(t, 10*time.Second, "n2's room all back", func() bool { return n2.Stats().InboundHeld == 0 })
			assert.Equal(t, uint64(2), laneStats(t, n2, "n1", routing.Small).MessagesReceived, "the slow request and the one behind: no other handed to a handler")
			assert.Equal(t, 1, handledCount(), "no given-up request handled")
		})
	}
}
