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

// TestARequestThatWaitedBehindABlockingInlineHandlerExpires: on the
// urgent and on the small lane, n2's reader runs an Inline handler that
// blocks until the test lets it go. A request with a 300 ms deadline,
// sent on the same lane meanwhile, waits in n2's socket receive queue
// until after its caller had its deadline error. Its deadline was counted
// from when the reader reached its frame, so it reached its handler with
// its whole 300 ms still to go, after its caller gave up: dead work the
// node did first. It is dated by the reader's samples of its receive
// queue while the Inline handler held it, as on the large lane, dropped
// as expired and counted so once, and its handler does not run.
func TestARequestThatWaitedBehindABlockingInlineHandlerExpires(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	for _, lane := range []routing.Lane{routing.Urgent, routing.Small} {
		t.Run(lane.String()+"/tcp", func(t *testing.T) { testInlineHeldExpiry(t, lane, nil) })
		t.Run(lane.String()+"/tls", func(t *testing.T) { testInlineHeldExpiry(t, lane, ca) })
	}
}

func testInlineHeldExpiry(t *testing.T, lane routing.Lane, ca *transporttest.CA) {
	const (
		verbPause transport.Verb = 237
		verbLate  transport.Verb = 238
	)
	pause := newGate()
	defer pause.open()
	c := transporttest.New(t, 2, transporttest.Options{CA: ca, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbPause: lane, verbLate: lane}
	}})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	pausing := make(chan struct{})
	n2.Handle(verbPause, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		close(pausing)
		return nil, pause.wait(ctx)
	}), transport.Inline())
	var late atomic.Int64
	n2.Handle(verbLate, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		late.Add(1)
		return nil, nil
	}))

	paused := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbPause, nil)
		paused <- err
	}()
	within(t, pausing, 10*time.Second, "the reader held by the Inline handler")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctx, c.ID(1), verbLate, []byte("late"))
		answered <- err
	}()
	err := within(t, answered, 10*time.Second, "the late request's caller")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// The reader is held past the late request's deadline; a sleep here
	// only makes it longer than that, never shorter.
	time.Sleep(100 * time.Millisecond)
	pause.open()
	require.NoError(t, within(t, paused, 10*time.Second, "the pausing request's answer"))

	waitFor(t, 10*time.Second, "the late request handled or dropped", func() bool {
		return late.Load() > 0 || n2.Stats().Total().DroppedInbound[transport.ReasonExpired] > 0
	})
	assert.Zero(t, late.Load(), "its handler ran after its caller gave up")
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonExpired], "counted expired once")

	// What arrives once the reader goes on is not dated back.
	resp, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbLate, []byte("in time"))
	require.NoError(t, err)
	assert.Empty(t, resp)
	assert.EqualValues(t, 1, late.Load())
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonExpired])
}
