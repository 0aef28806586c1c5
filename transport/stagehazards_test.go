package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// The hazards of running a frame's messages concurrently, each found by
// review and proven here.

// TestEchoOfABatchedRequestIsIntact: a response that is the request's own
// payload, large by the responder's threshold though its request came in a
// batch frame (the sender's threshold is higher), is sent intact: the
// frame's buffer goes back to the pool when the handler returns, before
// the response is written.
func TestEchoOfABatchedRequestIsIntact(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Lanes.LargeThreshold = 8 << 10
		}
	})
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	var bad atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				p := bytes.Repeat(fmt.Appendf(nil, "%02d-%03d|", g, i), 30000/7)
				resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, p)
				if !assert.NoError(t, err) {
					return
				}
				if !bytes.Equal(resp, p) {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Zero(t, bad.Load(), "responses corrupted")
}

// TestHandlersAppendingToTheirPayloadsDoNotMeet: a handler that appends
// to m.Payload does not write over the next message of its frame, which
// another handler may be reading at that moment (run with -race).
func TestHandlersAppendingToTheirPayloadsDoNotMeet(t *testing.T) {
	c := newCluster(t, 2, nil)
	var corrupt atomic.Int64
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		if !bytes.Equal(m.Payload, bytes.Repeat(m.Payload[:8], 4)) {
			corrupt.Add(1)
		}
		return append(m.Payload, make([]byte, 64)...), nil
	}))
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				var p [32]byte
				for k := range 4 {
					binary.BigEndian.PutUint64(p[k*8:], uint64(g*1000+i))
				}
				_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, p[:])
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, corrupt.Load(), "payloads overwritten by another handler's append")
}

// TestCancelsDoNotOutliveTheRequesterIncarnation: cancels that came after
// their request finished are remembered; once the requester restarts, its
// new requests must not meet them.
func TestCancelsDoNotOutliveTheRequesterIncarnation(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		time.Sleep(time.Millisecond)
		return []byte("ok"), nil
	}))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				ctx, cancel := context.WithCancel(context.Background())
				go func() {
					time.Sleep(time.Millisecond + time.Duration(rand.IntN(400))*time.Microsecond) // races the answer
					cancel()
				}()
				_, _ = c.Nodes[0].Request(ctx, c.ID(1), verbEcho, nil)
				cancel()
			}
		})
	}
	wg.Wait()

	// The new incarnation calls another verb, so that cancels of the first
	// one still on their way (which may drop its own requests, still
	// queued) cannot be mistaken for cancels that hit the new requests.
	const verbFresh transport.Verb = 97
	c.Nodes[1].Handle(verbFresh, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		time.Sleep(time.Millisecond)
		return []byte("ok"), nil
	}))
	n1, err := c.Restart(0)
	require.NoError(t, err)
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if _, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbFresh, nil); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Zero(t, failed.Load(), "requests of the new incarnation that failed")
	var started int64
	for _, s := range c.Nodes[1].Stats().Stages {
		if s.Verb == verbFresh {
			started = s.Started
		}
	}
	assert.EqualValues(t, 16*50, started, "the new incarnation's requests all started: none was dropped as cancelled")
}

// TestResponseWithNoRoomIsAnsweredWithAFailure: a response the responder
// has no outbound room for is answered with ErrOverloaded at once, not
// left to its caller's deadline.
func TestResponseWithNoRoomIsAnsweredWithAFailure(t *testing.T) {
	c := newCluster(t, 2, nil) // 4 MiB outbound per connection
	var barrier sync.WaitGroup
	barrier.Add(4)
	big := make([]byte, 3<<20)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		barrier.Done()
		barrier.Wait() // all four answer at once: one fits
		return big, nil
	}))
	var wg sync.WaitGroup
	var ok, overloaded atomic.Int64
	for range 4 {
		wg.Go(func() {
			start := time.Now()
			_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbEcho, []byte("q"))
			switch {
			case err == nil:
				ok.Add(1)
			case assert.ErrorIs(t, err, transport.ErrOverloaded):
				overloaded.Add(1)
				assert.Less(t, time.Since(start), 10*time.Second, "answered, not timed out")
			}
		})
	}
	wg.Wait()
	assert.Positive(t, ok.Load())
	assert.Positive(t, overloaded.Load())
	assert.EqualValues(t, 4, ok.Load()+overloaded.Load())
}
