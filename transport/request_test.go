package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

const (
	verbEcho  transport.Verb = 10
	verbFail  transport.Verb = 11
	verbBlock transport.Verb = 12
	verbPanic transport.Verb = 13
)

func TestRequestEcho(t *testing.T) {
	c := newCluster(t, 2, nil)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return append([]byte(string(m.From)+":"), m.Payload...), nil
	})
	for _, size := range []int{0, 1, 1000, 64 << 10, 200 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := makePayload(0, uint64(size), size)
			resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, p)
			require.NoError(t, err)
			require.Equal(t, append([]byte("n1:"), p...), resp)
		})
	}
}

func TestRequestHandlerError(t *testing.T) {
	c := newCluster(t, 2, nil)
	handleAll(c, verbFail, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, errors.New("disk on fire")
	})
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbFail, []byte("x"))
	require.Error(t, err)
	assert.ErrorIs(t, err, transport.ErrHandler)
	var remote *transport.RemoteError
	require.ErrorAs(t, err, &remote)
	assert.Equal(t, "disk on fire", remote.Message)
	var op *transport.OpError
	require.ErrorAs(t, err, &op)
	assert.Equal(t, c.ID(1), op.Peer)
}

func TestRequestHandlerPanicIsAnError(t *testing.T) {
	c := newCluster(t, 2, nil)
	handleAll(c, verbPanic, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		panic("boom")
	})
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbPanic, nil)
	assert.ErrorIs(t, err, transport.ErrHandler)
	// The node keeps serving.
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("ok"))
	require.NoError(t, err)
	assert.Equal(t, "ok", string(resp))
}

func TestRequestUnknownVerb(t *testing.T) {
	c := newCluster(t, 2, nil)
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), 999, []byte("x"))
	assert.ErrorIs(t, err, transport.ErrUnknownVerb)
	waitFor(t, 5*time.Second, "unknown verb counted", func() bool {
		return c.Nodes[1].Stats().Total().DroppedInbound[transport.ReasonUnknownVerb] == 1
	})
}

func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.PerVerb = map[transport.Verb]time.Duration{verbBlock: 50 * time.Millisecond}
	})
	defer close(release)
	handleAll(c, verbBlock, func(ctx context.Context, m *transport.Message) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done(): // the message's expiry reaches the handler
		}
		return nil, ctx.Err()
	})

	// Deadline from the context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.Nodes[0].Request(ctx, c.ID(1), verbBlock, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())

	// Deadline from the verb's default timeout.
	_, err = c.Nodes[0].Request(context.Background(), c.ID(1), verbBlock, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Cancellation.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, err = c.Nodes[0].Request(ctx, c.ID(1), verbBlock, nil)
	require.ErrorIs(t, err, context.Canceled)
}

func TestRequestUnknownPeer(t *testing.T) {
	c := newCluster(t, 1, nil)
	_, err := c.Nodes[0].Request(ctxTimeout(t, time.Second), "nobody", verbEcho, nil)
	assert.ErrorIs(t, err, transport.ErrUnknownPeer)
	err = c.Nodes[0].Send(context.Background(), "nobody", verbEcho, nil)
	assert.ErrorIs(t, err, transport.ErrUnknownPeer)
}

func TestNestedRequestDoesNotDeadlock(t *testing.T) {
	// n2's handler asks n1 before answering: the answer to that inner
	// request arrives on the same connection the outer request came on.
	c := newCluster(t, 2, nil)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	c.Nodes[1].Handle(verbFail, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return c.Nodes[1].Request(ctx, m.From, verbEcho, []byte("inner"))
	}))
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbFail, nil)
	require.NoError(t, err)
	assert.Equal(t, "inner", string(resp))
}

// TestExpiredMessagesAreDroppedAndCounted: a message that expires while
// its handler's connection is busy never reaches the handler. In a
// synctest bubble: on real sockets the receiver's deadline is its clock at
// arrival plus the time left when the frame was written, later than the
// sender's by the transit, so a release right after the sender's deadline
// sometimes came before the receiver's, and the message was handled.
func TestExpiredMessagesAreDroppedAndCounted(t *testing.T) {
	inBubble(t, time.Minute, func(t *testing.T) {
		release := make(chan struct{})
		handled := make(chan string, 10)
		c, err := transporttest.Start(2, transporttest.Options{InMemory: true})
		require.NoError(t, err)
		defer c.Close()
		c.Nodes[1].Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			handled <- string(m.Payload)
			<-release
			return nil, nil
		}))
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbBlock, []byte("first")))
		require.Equal(t, "first", <-handled)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbBlock, []byte("short-lived")))
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbBlock, []byte("last")))
		synctest.Wait() // both arrived and wait behind the handler
		assert.Equal(t, uint64(3), c.Nodes[0].Stats().Total().MessagesSent)
		assert.Equal(t, uint64(1), c.Nodes[1].Stats().Total().MessagesReceived)
		<-ctx.Done() // the bubble's clock at the deadline, n2's too: sent and read at one instant
		close(release)
		require.Equal(t, "last", <-handled)
		synctest.Wait()
		assert.Equal(t, uint64(1), c.Nodes[1].Stats().Total().DroppedInbound[transport.ReasonExpired])
		assert.Empty(t, handled)
	})
}

func TestSendAfterDeadlineFailsAtOnce(t *testing.T) {
	c := newCluster(t, 2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.Nodes[0].Send(ctx, c.ID(1), verbData, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestSendTooLarge(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Memory.MaxMessageSize = 1 << 20 })
	err := c.Nodes[0].Send(context.Background(), c.ID(1), verbData, make([]byte, 1<<20+1))
	assert.ErrorIs(t, err, transport.ErrTooLarge)
}

// TestMessageAboveTheReceiversLimitIsRefusedAlone: nodes whose
// MaxMessageSize differ (a rolling change of it). A 30 KiB message, small
// enough to travel in a batch frame, reaches a node whose limit is 16 KiB.
// The receiver decoded batch frames against its own limit, so the message
// made its whole frame malformed: the connection was closed as bad input,
// the request beside it failed with it, and a one-way message in the frame
// had no outcome. Now the message alone is refused, as a large one is: the
// request fails with ErrTooLarge, a one-way message is dropped as too
// large, and the connection carries on. Both directions: a request to the
// smaller node, and a response to it.
func TestMessageAboveTheReceiversLimitIsRefusedAlone(t *testing.T) {
	const (
		verbHeld   transport.Verb = 170
		verbAnswer transport.Verb = 171
		limit                     = 16 << 10
		over                      = 30 << 10 // under LargeThreshold: a batch frame's
	)
	for _, tc := range []struct {
		name            string
		smaller         int // the node with the smaller limit
		request, answer int
		droppedAt       int // the node that drops the message
	}{
		{name: "request", smaller: 1, request: over, answer: 2, droppedAt: 1},
		{name: "response", smaller: 0, request: 2, answer: over, droppedAt: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				if i == tc.smaller {
					cfg.Memory.MaxMessageSize = limit
				}
			})
			gate := make(chan struct{})
			c.Nodes[1].Handle(verbHeld, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
				<-gate
				return []byte("held"), nil
			}))
			c.Nodes[1].Handle(verbAnswer, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
				return make([]byte, tc.answer), nil
			}))
			held := make(chan error, 1)
			go func() {
				_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbHeld, []byte("x"))
				held <- err
			}()
			waitFor(t, 5*time.Second, "the held request running", func() bool {
				for _, s := range c.Nodes[1].Stats().Stages {
					if s.Verb == verbHeld && s.Active == 1 {
						return true
					}
				}
				return false
			})
			_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbAnswer, make([]byte, tc.request))
			assert.ErrorIs(t, err, transport.ErrTooLarge)
			close(gate)
			assert.NoError(t, <-held, "the request in flight beside it")

			at := c.Nodes[tc.droppedAt].Stats()
			assert.Equal(t, uint64(1), at.Total().DroppedInbound[transport.ReasonTooLarge])
			assert.Zero(t, at.InboundMalformed, "a peer's larger message is not bad input")
			assert.Equal(t, uint64(1), c.Nodes[0].Stats().Total().Connects, "the connection carried on")
		})
	}
	t.Run("one-way", func(t *testing.T) {
		c := newCluster(t, 2, func(i int, cfg *transport.Config) {
			if i == 1 {
				cfg.Memory.MaxMessageSize = limit
			}
		})
		var got atomic.Int64
		c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
			got.Add(int64(len(m.Payload)))
			return nil, nil
		}))
		ctx := ctxTimeout(t, 10*time.Second)
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, make([]byte, over)))
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, make([]byte, 100)))
		waitFor(t, 10*time.Second, "the message after it delivered", func() bool { return got.Load() == 100 })
		at := c.Nodes[1].Stats()
		assert.Equal(t, uint64(1), at.Total().DroppedInbound[transport.ReasonTooLarge])
		assert.Zero(t, at.InboundMalformed)
		assert.Equal(t, uint64(1), c.Nodes[0].Stats().Total().Connects, "the connection carried on")
	})
}
