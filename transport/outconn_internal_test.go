package transport

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// TestAProducerWriteBehindPrunedSegmentsLeavesNothingQueued: one-way
// messages that expired while their peer could not be dialled were pruned
// when the dial failed, and the segments that had held them stayed in the
// queue, empty. Once the lane was connected and quiet, a producer writing
// its own message took the oldest segment, an empty one, wrote nothing,
// counted that as its write (its second write took the next empty one),
// and returned without waking the writer: its message sat in the queue
// until the lane's next ping, up to a keepalive interval later (a
// request's whole deadline, for a short one).
func TestAProducerWriteBehindPrunedSegmentsLeavesNothingQueued(t *testing.T) {
	const verb Verb = 1
	n2Members := cluster.NewStatic()
	n2 := startNode(t, "n2", n2Members, nil)
	got := make(chan string, 4)
	n2.Handle(verb, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
		if len(m.Payload) < 64 {
			got <- string(m.Payload)
		}
		return nil, nil
	}))
	dialer := &gatedDialer{}
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), func(c *Config) {
		c.Dialer = dialer
		c.Lanes.Coalescing = func(routing.Lane) coalescing.Strategy { return coalescing.NewDisabled() }
	})
	n1.quietFor = 0 // producers write to a lane as soon as its writer waits idle
	n2Members.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialer.armToFail(fmt.Errorf("dial: %w", syscall.ECONNREFUSED)) // the peer may come back
	released := false
	release := func() {
		if !released {
			released = true
			close(dialer.release)
		}
	}
	t.Cleanup(release) // before the nodes close (cleanups run last first): their writer waits in the dial
	require.NoError(t, n1.Send(ctx, "n2", verb, []byte("first")))
	within(t, dialer.entered, 10*time.Second, "the lane's dial")
	// Queued behind the first, while the dial hangs: 2.5 MiB, several
	// segments, that expire before the dial fails. The deadline leaves a
	// slow machine (-race) the time to queue them all.
	expiring, cancelExpiring := context.WithTimeout(ctx, time.Second)
	defer cancelExpiring()
	for range 64 {
		require.NoError(t, n1.Send(expiring, "n2", verb, make([]byte, 40<<10)))
	}
	<-expiring.Done()
	release() // the dial fails, the expired messages are pruned; the next dial connects
	require.Equal(t, "first", within(t, got, 10*time.Second, "the first message"))
	c := n1.peerStats("n2").lanes[routing.Small].Load()
	eventually(t, func() bool { return c.quietSince.Load() != 0 }, "the lane's writer waits idle")

	require.NoError(t, n1.Send(ctx, "n2", verb, []byte("second")))
	select {
	case m := <-got:
		assert.Equal(t, "second", m)
	case <-time.After(wire.KeepaliveInterval / 2): // the writer's ping is due about a keepalive interval after the first
		n, _ := c.queue.pending()
		t.Fatalf("a message sent to a quiet lane was left in its queue, its writer not woken: %d pending", n)
	}
	p := n1.peerStats("n2")
	assert.EqualValues(t, 64, p.outbound[routing.Small].dropped[ReasonExpired].Load())
	assert.EqualValues(t, 2, p.outbound[routing.Small].sent.Load())
}
