package transport_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestALargeRequestThatWaitedWhileTheLargeReaderWasHeldExpires: n2's
// large-lane reader is held by a slow ReaderHandler, which has taken one
// byte of a large message's first part and reads no more. A request with
// a 300 ms deadline, pinned to the large lane and empty (its
// FrameLargeBegin is all of it, so its sender never withdraws it), is
// written meanwhile and waits in n2's socket receive queue until after
// its caller gave up. Its deadline was counted from when the reader
// reached its frame, so it reached its handler with its whole 300 ms
// still to go, after its caller had its deadline error. It is dated by
// the reader's samples of its receive queue while it was held, refused
// as expired and counted so once, and its handler does not run.
//
// A request with a payload (200KiB) is the guard of the other way it
// ends: its sender withdraws it once expired (FrameLargeCancel), as its
// parts wait for a grant, and its receiver counts it expired once, its
// handler never run, with or without the reader's marks.
func TestALargeRequestThatWaitedWhileTheLargeReaderWasHeldExpires(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		ca   *transporttest.CA
	}{{"tcp", nil}, {"tls", ca}} {
		t.Run(tc.name+"/empty", func(t *testing.T) { testHeldLargeReaderExpiry(t, tc.ca, nil) })
		t.Run(tc.name+"/200KiB", func(t *testing.T) { testHeldLargeReaderExpiry(t, tc.ca, make([]byte, 200<<10)) })
	}
}

func testHeldLargeReaderExpiry(t *testing.T, ca *transporttest.CA, payload []byte) {
	const (
		verbHold transport.Verb = 232
		verbLate transport.Verb = 233
	)
	g := newGate()
	defer g.open()
	c := transporttest.New(t, 2, transporttest.Options{CA: ca, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbLate: routing.Large}
		// Room in n2's receive queue for what is sent while it is held.
		cfg.Lanes.Sockets[routing.Large].ReceiveBuffer = 4 << 20
	}})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	holding := make(chan struct{})
	n2.HandleReader(verbHold, transport.ReaderHandlerFunc(func(ctx context.Context, _ *transport.Message, body io.Reader) ([]byte, error) {
		if _, err := io.CopyN(io.Discard, body, 1); err != nil {
			return nil, err
		}
		close(holding)
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		_, err := io.Copy(io.Discard, body)
		return nil, err
	}))
	var late atomic.Int64
	n2.Handle(verbLate, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		late.Add(1)
		return nil, nil
	}))

	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbHold, make([]byte, 100<<10)))
	within(t, holding, 10*time.Second, "the reader held by the slow handler")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctx, c.ID(1), verbLate, payload)
		answered <- err
	}()
	err := within(t, answered, 10*time.Second, "the late request's caller")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// The reader is held past the late request's deadline; a sleep here
	// only makes it longer than that, never shorter.
	time.Sleep(100 * time.Millisecond)
	g.open()

	waitFor(t, 10*time.Second, "the late request handled or dropped", func() bool {
		return late.Load() > 0 || n2.Stats().Total().DroppedInbound[transport.ReasonExpired] > 0
	})
	assert.Zero(t, late.Load(), "its handler ran after its caller gave up")
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonExpired], "counted expired once")

	// What arrives once the reader goes on is not dated back.
	resp, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbLate, payload)
	require.NoError(t, err)
	assert.Empty(t, resp)
	assert.EqualValues(t, 1, late.Load())
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonExpired])
}

// TestALargeRequestGrantedLateAfterTheReaderWasHeldExpires: a request with
// a payload (200 KiB) and a one-second deadline is begun while n2's
// large-lane reader is held by a slow ReaderHandler. The reader goes on
// 400 ms later, within the deadline, and grants it, so its sender writes
// its parts; they wait behind an Inline handler that holds the reader
// again until after the caller had its deadline error. Its deadline was
// counted from when the reader reached its FrameLargeBegin, 400 ms late,
// so it reached its handler after its caller gave up. It is dated by the
// reader's samples while it was held, and dropped as expired once whole.
func TestALargeRequestGrantedLateAfterTheReaderWasHeldExpires(t *testing.T) {
	const (
		verbHold  transport.Verb = 234
		verbPause transport.Verb = 235
		verbLate  transport.Verb = 236
	)
	hold, pause := newGate(), newGate()
	defer hold.open()
	defer pause.open()
	c := transporttest.New(t, 2, transporttest.Options{Tweak: func(_ int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbPause: routing.Large}
		cfg.Lanes.Sockets[routing.Large].ReceiveBuffer = 4 << 20
	}})
	n1, n2 := c.Nodes[0], c.Nodes[1]
	holding, pausing := make(chan struct{}), make(chan struct{})
	n2.HandleReader(verbHold, transport.ReaderHandlerFunc(func(ctx context.Context, _ *transport.Message, body io.Reader) ([]byte, error) {
		if _, err := io.CopyN(io.Discard, body, 1); err != nil {
			return nil, err
		}
		close(holding)
		if err := hold.wait(ctx); err != nil {
			return nil, err
		}
		_, err := io.Copy(io.Discard, body)
		return nil, err
	}))
	n2.Handle(verbPause, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
		close(pausing)
		return nil, pause.wait(ctx)
	}), transport.Inline())
	var late atomic.Int64
	n2.Handle(verbLate, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		late.Add(1)
		return nil, nil
	}))

	require.NoError(t, n1.Send(context.Background(), c.ID(1), verbHold, make([]byte, 100<<10)))
	within(t, holding, 10*time.Second, "the reader held by the slow handler")
	waitFor(t, 5*time.Second, "the held message written", func() bool { return largePending(n1) == 0 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctx, c.ID(1), verbLate, make([]byte, 200<<10))
		answered <- err
	}()
	waitFor(t, 5*time.Second, "the late request queued", func() bool { return largePending(n1) == 1 })
	paused := make(chan error, 1)
	go func() {
		_, err := n1.Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbPause, nil)
		paused <- err
	}()
	// Held for part of the late request's second: it is granted in time,
	// and its parts are written.
	time.Sleep(400 * time.Millisecond)
	hold.open()
	within(t, pausing, 5*time.Second, "the reader held by the Inline handler")
	err := within(t, answered, 10*time.Second, "the late request's caller")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// Its parts wait behind the Inline handler past its deadline; a sleep
	// here only makes that longer, never shorter.
	time.Sleep(50 * time.Millisecond)
	pause.open()
	require.NoError(t, within(t, paused, 10*time.Second, "the pausing request's answer"))

	waitFor(t, 10*time.Second, "the late request handled or dropped", func() bool {
		return late.Load() > 0 || n2.Stats().Total().DroppedInbound[transport.ReasonExpired] > 0
	})
	assert.Zero(t, late.Load(), "its handler ran after its caller gave up")
	assert.Equal(t, uint64(1), n2.Stats().Total().DroppedInbound[transport.ReasonExpired], "counted expired once")
}

// largePending is what n has on its large lanes not yet written in full.
func largePending(n *transport.Transport) uint64 {
	var p uint64
	for _, cs := range n.Stats().Conns {
		if cs.Lane == routing.Large {
			p += cs.PendingMessages
		}
	}
	return p
}
