package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the settings every scenario sees.
type Options struct {
	Warmup   time.Duration // load runs this long before measuring
	Duration time.Duration // the measured interval
	Drain    time.Duration // after stopping the load, the longest wait for outcomes
	Payload  int           // bytes per message, for scenarios that take it
	Rate     int           // messages per second, for open-loop scenarios
	Repeat   int           // runs per (scenario, system); figures are medians
}

// Run is one measured run of a scenario against a system. Scenarios use its
// methods from load goroutines; all of them are safe for concurrent use.
type Run struct {
	Sys  System
	Opts Options

	ctx      context.Context // passed to Send/Request; cancelled when the drain times out
	cancel   context.CancelFunc
	base     time.Time // origin of window times
	stopping atomic.Bool
	stopped  chan struct{}
	load     sync.WaitGroup

	// Measurement window, in ns since base: latencies of operations started
	// inside [windowStart, windowEnd) are recorded.
	windowStart, windowEnd atomic.Int64

	oneway         tally // one-way messages
	requests       tally // requests
	deliveredBytes atomic.Uint64
	rejected       atomic.Uint64 // refused with ErrBusy: not sent
	sendErrors     atomic.Uint64 // refused with another error: not sent

	recMu     sync.Mutex
	recorders []*Recorder
}

// tally counts the outcomes of one kind of message. For one-way messages
// failed stays zero: failures are reported by the system (FailureCounter).
type tally struct {
	sent      atomic.Uint64 // accepted by Send, or Request called
	delivered atomic.Uint64 // handler ran (one-way) or correct echo returned (request)
	failed    atomic.Uint64 // request returned an error or a wrong echo
}

func newRun(sys System, opts Options) *Run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Run{Sys: sys, Opts: opts, ctx: ctx, cancel: cancel, base: time.Now(), stopped: make(chan struct{})}
	r.windowStart.Store(math.MaxInt64)
	r.windowEnd.Store(math.MaxInt64)
	return r
}

// Go runs fn as a load goroutine; the harness waits for it when draining.
func (r *Run) Go(fn func()) {
	r.load.Add(1)
	go func() {
		defer r.load.Done()
		fn()
	}()
}

// Stopping reports whether load generators should stop issuing messages.
func (r *Run) Stopping() bool { return r.stopping.Load() }

// Stopped is closed when load generators should stop.
func (r *Run) Stopped() <-chan struct{} { return r.stopped }

// onMessage is the receiver hook.
func (r *Run) onMessage(payload []byte) {
	r.oneway.delivered.Add(1)
	r.deliveredBytes.Add(uint64(len(payload)))
}

// Send sends payload one way, retrying while the system answers ErrBusy
// (after sleeping 10 µs, doubling up to 250 µs) until it is accepted or the
// run stops. Sleeping rather than spinning leaves the CPU to the system.
func (r *Run) Send(payload []byte) {
	backoff := time.Duration(0)
	for {
		err := r.Sys.Send(r.ctx, payload)
		switch {
		case err == nil:
			r.oneway.sent.Add(1)
			return
		case errors.Is(err, ErrBusy):
			r.rejected.Add(1)
		default:
			r.sendErrors.Add(1)
		}
		if r.Stopping() {
			return
		}
		backoff = min(max(2*backoff, 10*time.Microsecond), 250*time.Microsecond)
		time.Sleep(backoff)
	}
}

// Request sends payload as a request started now and records its latency
// in rec (which may be nil).
func (r *Run) Request(payload []byte, rec *Recorder) {
	r.RequestAt(time.Now(), payload, rec)
}

// RequestAt is Request for an operation meant to start at intended:
// latency runs from intended, not from when the call was made, so an
// open-loop scheduler that falls behind does not hide the delay. The
// service time (from the call to the response) is recorded as well.
func (r *Run) RequestAt(intended time.Time, payload []byte, rec *Recorder) {
	r.requests.sent.Add(1)
	called := time.Now()
	resp, err := r.Sys.Request(r.ctx, payload)
	done := time.Now()
	switch {
	case errors.Is(err, ErrBusy):
		r.requests.sent.Add(^uint64(0))
		r.rejected.Add(1)
	case err != nil || !bytes.Equal(resp, payload):
		r.requests.failed.Add(1)
	default:
		r.requests.delivered.Add(1)
		r.deliveredBytes.Add(uint64(len(payload)))
		if rec != nil {
			rec.Record(intended, called, done)
		}
	}
}

// snapshot is the state of the counters at one instant.
type snapshot struct {
	at        time.Time
	cpu       time.Duration
	delivered uint64
	bytes     uint64
	writes    uint64
}

func (r *Run) snapshot() snapshot {
	s := snapshot{at: time.Now(), cpu: processCPU(), bytes: r.deliveredBytes.Load(),
		delivered: r.oneway.delivered.Load() + r.requests.delivered.Load()}
	if wc, ok := r.Sys.(WriteCounter); ok {
		s.writes = wc.Writes()
	}
	return s
}

// accounting returns, for all messages of the run so far, how many were
// sent, delivered and failed. One-way failures are the system's own count
// (FailureCounter); request failures are the errors Request returned.
func (r *Run) accounting() (sent, delivered, failed uint64) {
	sent = r.oneway.sent.Load() + r.requests.sent.Load()
	delivered = r.oneway.delivered.Load() + r.requests.delivered.Load()
	failed = r.requests.failed.Load()
	if fc, ok := r.Sys.(FailureCounter); ok && r.oneway.sent.Load() > 0 {
		failed += fc.Failures()
	}
	return sent, delivered, failed
}

// execute runs sc once against a fresh system and measures it.
func execute(sc *Scenario, entry systemEntry, opts Options) (Result, error) {
	runtime.GC() // do not bill this run for the previous one's garbage
	sys := entry.New()
	r := newRun(sys, opts)
	defer r.cancel()
	if err := sys.Start(r.ctx, Hooks{OnMessage: r.onMessage}); err != nil {
		sys.Close()
		return Result{}, err
	}
	payload := make([]byte, sc.PayloadSize(opts))
	for i := range payload {
		payload[i] = byte(i)
	}
	sc.Load(r, payload)

	time.Sleep(opts.Warmup)
	r.windowStart.Store(time.Since(r.base).Nanoseconds())
	begin := r.snapshot()
	time.Sleep(opts.Duration)
	end := r.snapshot()
	r.windowEnd.Store(end.at.Sub(r.base).Nanoseconds())

	r.stopping.Store(true)
	close(r.stopped)
	drainUntil := time.Now().Add(opts.Drain)
	loadDone := waitGroupDone(&r.load)
	drained := waitUntil(drainUntil, loadDone, func() bool {
		sent, delivered, failed := r.accounting()
		return delivered+failed >= sent
	})

	res := r.result(sc, entry.Name, begin, end)
	res.Drained = drained

	r.cancel() // unblock calls still waiting on the context
	closeErr := sys.Close()
	select {
	case <-loadDone:
	case <-time.After(opts.Drain):
		return res, errors.New("load goroutines still blocked after Close")
	}
	return res, closeErr
}

// waitUntil waits until loadDone is closed and cond holds, or deadline
// passes, and reports which. cond is polled: it reads counters owned by
// other goroutines and the system.
func waitUntil(deadline time.Time, loadDone <-chan struct{}, cond func() bool) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	for {
		select {
		case <-timeout.C:
			return false
		case <-tick.C:
		}
		select {
		case <-loadDone:
			if cond() {
				return true
			}
		default:
		}
	}
}

func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}
