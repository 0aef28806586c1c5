package transport_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestAMessageThatWaitedInTheReceiveQueueWhileReadingPausedExpires: n2's
// reader pauses for inbound capacity (a handler holds it all). A message
// sent meanwhile with a one-second deadline waits in n2's socket receive
// queue, behind the frame the reader waits on, until after its deadline.
// Its deadline was counted from when the reader took it from the socket,
// so it reached its handler with its whole second still to go, long
// after its sender gave up: the simulator saw such deadlines 3 to 5 s
// late behind a stalled disk, and the stalled node spent its catching up
// on work no one waited for. It is now dated by the reader's samples of
// its receive queue while it paused, and dropped as expired.
// Over TLS the bytes are counted below TLS, as the receive queue holds
// them.
func TestAMessageThatWaitedInTheReceiveQueueWhileReadingPausedExpires(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		ca   *transporttest.CA
	}{{"tcp", nil}, {"tls", ca}} {
		t.Run(tc.name, func(t *testing.T) { testPausedReceiveQueueExpiry(t, tc.ca) })
	}
}

func testPausedReceiveQueueExpiry(t *testing.T, ca *transporttest.CA) {
	const (
		verbHold transport.Verb = 230
		verbLate transport.Verb = 231
	)
	g := newGate()
	defer g.open()
	c := transporttest.New(t, 2, transporttest.Options{CA: ca, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 32 << 10, PerPeer: 256 << 10, Node: 1 << 20}
		cfg.Memory.MaxMessageSize = 16 << 10
		// Room in n2's receive queue for what is sent while it pauses.
		cfg.Lanes.Sockets[routing.Small].ReceiveBuffer = 1 << 20
	}})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	n2.Handle(verbHold, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	var late atomic.Int64
	n2.Handle(verbLate, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		late.Add(1)
		return nil, nil
	}))

	// One held message at a time, each in a frame of its own, until n2's
	// reader waits for room: the first is in its handler, the next wait
	// behind it in the verb's order, holding their bytes.
	hold := make([]byte, 12<<10)
	sent := uint64(0)
	for i := 1; n2.Stats().Total().Throttled == 0; i++ {
		require.Less(t, i, 8, "n2's reader never paused")
		sent++
		require.NoError(t, n1.Send(context.Background(), c.ID(1), verbHold, hold))
		waitFor(t, 5*time.Second, "the held message written", func() bool {
			return n1.Stats().Total().MessagesSent == uint64(i)
		})
		// Taken (a handler or the verb's queue holds it) or waiting
		// for room: the reader has read its header either way.
		waitFor(t, 5*time.Second, "the held message read", func() bool {
			st := n2.Stats().Total()
			return st.Throttled > 0 || n2.Stats().InboundBytes >= int64(i)*(12<<10)
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, n1.Send(ctx, c.ID(1), verbLate, []byte("late")))
	waitFor(t, 5*time.Second, "the late message written", func() bool {
		return n1.Stats().Total().MessagesSent == sent+1
	})
	// The pause outlasts the late message's deadline; a sleep here only
	// makes it longer than that, never shorter.
	<-ctx.Done()
	time.Sleep(250 * time.Millisecond)
	g.open()

	waitFor(t, 10*time.Second, "the late message dropped as expired", func() bool {
		return n2.Stats().Total().DroppedInbound[transport.ReasonExpired] == 1
	})
	assert.Zero(t, late.Load(), "its handler ran after its sender gave up")

	// What arrives once reading resumed is not dated back.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, n1.Send(ctx, c.ID(1), verbLate, []byte("in time")))
	waitFor(t, 5*time.Second, "the next message handled", func() bool { return late.Load() == 1 })
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonExpired])
}
