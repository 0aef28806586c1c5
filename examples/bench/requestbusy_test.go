package main

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// busySystem answers ErrBusy to its first busy requests, then echoes;
// onCall runs before each answer, with the call's number from 1.
type busySystem struct {
	busy   int64
	calls  atomic.Int64
	onCall func(n int64)
}

func (s *busySystem) Start(context.Context, Hooks) error { return nil }
func (s *busySystem) Send(context.Context, []byte) error { return ErrBusy }
func (s *busySystem) Close() error                       { return nil }
func (s *busySystem) Request(_ context.Context, p []byte) ([]byte, error) {
	n := s.calls.Add(1)
	if s.onCall != nil {
		s.onCall(n)
	}
	if n <= s.busy {
		return nil, ErrBusy
	}
	return p, nil
}

// inBubble runs f in a synctest bubble, whose clock moves only when every
// goroutine in it waits.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if strings.Contains(os.Getenv("GODEBUG"), "asynctimerchan=1") {
		t.Skip("testing/synctest needs the timers of Go 1.23 and later (asynctimerchan=0)")
	}
	synctest.Test(t, f)
}

// A closed-loop request sender whose system refuses every request for
// lack of capacity must wait between tries, as Send does, not call again
// at once: 128 goroutines doing that take the CPU the system needs to
// make room. In the bubble a loop that does not wait makes its 500 calls
// without the clock moving.
func TestClosedLoopRequestsWaitWhileBusy(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		const calls = 500
		var r *Run
		sys := &busySystem{busy: calls}
		sys.onCall = func(n int64) {
			if n == calls {
				r.stopping.Store(true)
			}
		}
		r = newRun(sys, Options{})
		defer r.cancel()
		start := time.Now()
		closedLoopRequests(1)(r, []byte("x"))
		r.load.Wait()
		elapsed := time.Since(start)

		// After the first few tries, at most one every 250 µs.
		assert.GreaterOrEqual(t, elapsed, 100*time.Millisecond, "%d refused requests tried again within %v", calls, elapsed)
		assert.EqualValues(t, calls, r.rejected.Load())
		sent, delivered, failed := r.accounting()
		assert.Zero(t, sent, "no request was accepted")
		assert.Zero(t, delivered)
		assert.Zero(t, failed)
	})
}

// A closed-loop request refused for lack of capacity is tried again
// until accepted; its latency runs from when it was meant to start,
// through the waits.
func TestRequestTriesAgainWhileBusy(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		r := newRun(&busySystem{busy: 3}, Options{})
		defer r.cancel()
		r.measure.start.Store(r.since(time.Now()))
		rec := r.NewRecorder()
		r.Request([]byte("x"), rec)

		assert.EqualValues(t, 3, r.rejected.Load())
		sent, delivered, failed := r.accounting()
		assert.EqualValues(t, 1, sent)
		assert.EqualValues(t, 1, delivered)
		assert.Zero(t, failed)
		latency, _, _ := r.latencies(&r.measure)
		require.EqualValues(t, 1, latency.TotalCount())
		assert.GreaterOrEqual(t, time.Duration(latency.Max()), (10+20+40)*time.Microsecond,
			"the latency includes the waits after each refusal: 10, 20 and 40 µs")
	})
}

// An open-loop request refused for lack of capacity is counted as
// rejected and left out, not tried again: the scheduler starts one
// goroutine a request, and retrying ones would pile up, each calling
// every 250 µs, for as long as the system stalls.
func TestRequestAtLeavesOutABusyRequest(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		sys := &busySystem{busy: 3}
		r := newRun(sys, Options{})
		defer r.cancel()
		r.RequestAt(time.Now(), []byte("x"))

		assert.EqualValues(t, 1, sys.calls.Load(), "one try")
		assert.EqualValues(t, 1, r.rejected.Load())
		sent, delivered, failed := r.accounting()
		assert.Zero(t, sent, "never sent")
		assert.Zero(t, delivered)
		assert.Zero(t, failed)
	})
}
