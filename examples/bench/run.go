package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/transport"
)

// Options are the settings every scenario sees.
type Options struct {
	Warmup   time.Duration // load runs this long before measuring
	Duration time.Duration // the measured interval
	Drain    time.Duration // after stopping the load, the longest wait for outcomes
	Payload  int           // bytes per message, for scenarios that take it
	// Rate is messages per second for open-loop scenarios; 0 means each
	// scenario's own default (see rateOr).
	Rate int
	// Senders is the number of load goroutines for scenarios that take
	// it; 0 means each scenario's own default.
	Senders   int
	LargeSize int   // bytes of a large message (large, large-mixed, hol)
	FileSize  int64 // bytes of the file sent by the file scenario
	Repeat    int   // runs per (scenario, system); figures are medians
	// Nodes is the number of nodes of the saturate and idle scenarios; 0
	// means each scenario's own default.
	Nodes int
	// Limits are the internode limits of the saturate and idle scenarios.
	Limits meshLimits
}

// Defaults of the options that depend on the scenario.
const (
	defaultLargeSize = 16 << 20
	defaultFileSize  = 1 << 30
)

// rateOr returns -rate, or def when it was not given.
func (o Options) rateOr(def int) int {
	if o.Rate > 0 {
		return o.Rate
	}
	return def
}

// sendersOr returns -senders, or def when it was not given.
func (o Options) sendersOr(def int) int {
	if o.Senders > 0 {
		return o.Senders
	}
	return def
}

// largeSize returns -large-size, or its default.
func (o Options) largeSize() int {
	if o.LargeSize > 0 {
		return o.LargeSize
	}
	return defaultLargeSize
}

// fileSize returns -file-size, or its default.
func (o Options) fileSize() int64 {
	if o.FileSize > 0 {
		return o.FileSize
	}
	return defaultFileSize
}

// window is an interval of time, in ns since Run.base, in which latency
// samples are recorded: those of operations intended to start inside
// [start, end). Both ends are MaxInt64 until set, so nothing is recorded.
type window struct {
	start, end atomic.Int64
}

func (w *window) init() {
	w.start.Store(math.MaxInt64)
	w.end.Store(math.MaxInt64)
}

func (w *window) contains(at int64) bool { return at >= w.start.Load() && at < w.end.Load() }

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

	// measure is the measured interval; idle the interval a scenario with
	// an Idle phase measures before its Load starts.
	measure, idle window

	oneway         tally // one-way messages
	requests       tally // requests
	files          tally // file transfers
	deliveredBytes counter
	rejected       counter // refused with ErrBusy: not sent
	sendErrors     counter // refused with another error: not sent

	// hold, when set, is a channel every receiving handler waits on before
	// it counts its message (see HoldHandlers); deliver is the scenario's
	// receiver hook (see OnDeliver).
	hold    atomic.Pointer[chan struct{}]
	deliver atomic.Pointer[func(payload []byte)]

	// Background goroutines (see Background) run until the drain ends.
	bgStop chan struct{}
	bg     sync.WaitGroup

	mu        sync.Mutex // guards the fields below
	recorders []*Recorder
	finishers []func(*Result)
	err       error // set by Abort
}

// tally counts the outcomes of one kind of message. For one-way messages
// failed stays zero: failures are reported by the system (FailureCounter).
type tally struct {
	sent      counter // accepted by Send, or Request called
	delivered counter // handler ran (one-way) or correct echo returned (request)
	failed    counter // request returned an error or a wrong echo
}

// counter is an atomic counter on cache lines of its own. The load
// goroutines count what they send on one core while the receiving
// handlers count what they get on the other; counters sharing a line
// would make every count a cache miss on the other core (false sharing).
// In the small scenario that cost 0.17 µs a message, a cost of the
// harness that every system paid. 128 bytes: x86 fetches lines in
// adjacent pairs.
type counter struct {
	atomic.Uint64
	_ [120]byte
}

func newRun(sys System, opts Options) *Run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Run{Sys: sys, Opts: opts, ctx: ctx, cancel: cancel, base: time.Now(),
		stopped: make(chan struct{}), bgStop: make(chan struct{})}
	r.measure.init()
	r.idle.init()
	return r
}

// since returns the time since the run's origin, in ns.
func (r *Run) since(t time.Time) int64 { return t.Sub(r.base).Nanoseconds() }

// Go runs fn as a load goroutine; the harness waits for it when draining.
func (r *Run) Go(fn func()) {
	r.load.Add(1)
	go func() {
		defer r.load.Done()
		fn()
	}()
}

// Background runs fn in a goroutine that, unlike a load goroutine, keeps
// running through the drain: stop is closed once the drain is over, before
// the result is computed, and the harness waits for fn to return. For
// pollers that watch the system (overload's peak inbound bytes).
func (r *Run) Background(fn func(stop <-chan struct{})) {
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		fn(r.bgStop)
	}()
}

// OnResult registers fn to complete the run's result once it is measured
// and drained: scenario-specific figures, or figures the scenario measures
// its own way (file transfers). Finishers run in registration order.
func (r *Run) OnResult(fn func(*Result)) {
	r.mu.Lock()
	r.finishers = append(r.finishers, fn)
	r.mu.Unlock()
}

// Abort fails the run: the harness stops it and reports err. For Load's
// own failures (a temp file it could not create).
func (r *Run) Abort(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *Run) aborted() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// OnDeliver installs fn as the receiver hook: it is called with every
// one-way message's payload when the receiving handler runs, before the
// message is counted. Call it from Load before any message is sent.
func (r *Run) OnDeliver(fn func(payload []byte)) { r.deliver.Store(&fn) }

// HoldHandlers makes every receiving handler block until release is
// called (overload's stalled receiver). Call it from Load before any
// message is sent; release is safe to call more than once.
func (r *Run) HoldHandlers() (release func()) {
	ch := make(chan struct{})
	r.hold.Store(&ch)
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Stopping reports whether load generators should stop issuing messages.
func (r *Run) Stopping() bool { return r.stopping.Load() }

// Stopped is closed when load generators should stop.
func (r *Run) Stopped() <-chan struct{} { return r.stopped }

// InWindow reports whether t falls inside the measured interval.
func (r *Run) InWindow(t time.Time) bool { return r.measure.contains(r.since(t)) }

// onMessage is the receiver hook.
func (r *Run) onMessage(payload []byte) {
	if h := r.hold.Load(); h != nil {
		<-*h
	}
	if fn := r.deliver.Load(); fn != nil {
		(*fn)(payload)
	}
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

// Request sends payload as a request started now, for a closed-loop
// sender, and records its latency in rec (which may be nil). A request
// the system answers ErrBusy is counted (rejected) and tried again as
// Send does, after sleeping 10 µs, doubling up to 250 µs, until it is
// accepted or the run stops: a closed-loop sender that called again at
// once would spin the cores the system needs to make room.
func (r *Run) Request(payload []byte, rec *Recorder) {
	r.request(time.Now(), payload, true, rec)
}

// RequestAt is a request meant to start at intended, for an open-loop
// scheduler: latency runs from intended, not from when the call was
// made, so a scheduler that falls behind does not hide the delay. The
// service time (from the call to the response) is recorded as well, in
// every recorder given (each keeps only the samples of its own window).
// A request the system answers ErrBusy is counted (rejected) and left
// out, not tried again: a goroutine a request that waited for room would
// pile up, with their retries, for as long as the system stalls.
func (r *Run) RequestAt(intended time.Time, payload []byte, recs ...*Recorder) {
	r.request(intended, payload, false, recs...)
}

// request sends one request, tried again while the system is busy if
// retry is set; see Request and RequestAt.
func (r *Run) request(intended time.Time, payload []byte, retry bool, recs ...*Recorder) {
	r.requests.sent.Add(1)
	var (
		called, done time.Time
		resp         []byte
		err          error
		backoff      time.Duration
	)
	for {
		called = time.Now()
		resp, err = r.Sys.Request(r.ctx, payload)
		done = time.Now()
		if !errors.Is(err, ErrBusy) {
			break
		}
		r.rejected.Add(1)
		if !retry || r.Stopping() {
			r.requests.sent.Add(^uint64(0)) // never sent
			return
		}
		backoff = min(max(2*backoff, 10*time.Microsecond), 250*time.Microsecond)
		time.Sleep(backoff)
	}
	switch {
	case err != nil || !bytes.Equal(resp, payload):
		r.requests.failed.Add(1)
	default:
		r.requests.delivered.Add(1)
		r.deliveredBytes.Add(uint64(len(payload)))
		for _, rec := range recs {
			if rec != nil {
				rec.Record(intended, called, done)
			}
		}
	}
}

// SendFile transfers the first n bytes of f with the system's FileSender
// and reports whether the receiver got them all.
func (r *Run) SendFile(f *os.File, n int64) bool {
	r.files.sent.Add(1)
	if err := r.Sys.(FileSender).SendFile(r.ctx, f, n); err != nil {
		r.files.failed.Add(1)
		return false
	}
	r.files.delivered.Add(1)
	r.deliveredBytes.Add(uint64(n))
	return true
}

// paced calls fn(intended) for intended = start, start+interval, ... until
// the run stops, sleeping until each intended time. A pacer that wakes
// late calls fn at once for every time it missed, so the lateness shows
// in latencies measured from intended (no coordinated omission); fn must
// not block for long.
func (r *Run) paced(start time.Time, interval time.Duration, fn func(intended time.Time)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop() // since Go 1.23 a stopped timer delivers no stale tick
	defer timer.Stop()
	for i := 0; ; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.Stopped():
				return
			}
		}
		if r.Stopping() {
			return
		}
		fn(intended)
	}
}

// A stamp is written at the start of a one-way payload whose latency is
// measured at the receiver: the intended send time and the time of the
// Send call, in ns since the run's origin, and a tag (the sender).
const stampLen = 17

// stamp writes a stamp into msg, which must be at least stampLen long.
func (r *Run) stamp(msg []byte, intended, called time.Time, tag byte) {
	binary.LittleEndian.PutUint64(msg[0:8], uint64(r.since(intended)))
	binary.LittleEndian.PutUint64(msg[8:16], uint64(r.since(called)))
	msg[16] = tag
}

// readStamp returns the stamp of a payload written by stamp.
func (r *Run) readStamp(p []byte) (intended, called time.Time, tag byte) {
	intended = r.base.Add(time.Duration(binary.LittleEndian.Uint64(p[0:8])))
	called = r.base.Add(time.Duration(binary.LittleEndian.Uint64(p[8:16])))
	return intended, called, p[16]
}

// snapshot is the state of the counters at one instant.
type snapshot struct {
	at        time.Time
	cpu       time.Duration
	delivered uint64
	bytes     uint64
	writes    uint64
	syscw     uint64 // write syscalls of the process; valid when hasSyscw
	hasSyscw  bool
}

func (r *Run) snapshot() snapshot {
	s := snapshot{at: time.Now(), cpu: processCPU(), bytes: r.deliveredBytes.Load(),
		delivered: r.oneway.delivered.Load() + r.requests.delivered.Load() + r.files.delivered.Load()}
	if wc, ok := r.Sys.(WriteCounter); ok {
		s.writes = wc.Writes()
	}
	s.syscw, s.hasSyscw = writeSyscalls()
	return s
}

// accounting returns, for all messages of the run so far, how many were
// sent, delivered and failed. One-way failures are the system's own count
// (FailureCounter); request and file failures are the errors their calls
// returned.
func (r *Run) accounting() (sent, delivered, failed uint64) {
	sent = r.oneway.sent.Load() + r.requests.sent.Load() + r.files.sent.Load()
	delivered = r.oneway.delivered.Load() + r.requests.delivered.Load() + r.files.delivered.Load()
	failed = r.requests.failed.Load() + r.files.failed.Load()
	if fc, ok := r.Sys.(FailureCounter); ok && r.oneway.sent.Load() > 0 {
		failed += fc.Failures()
	}
	return sent, delivered, failed
}

// execute runs sc once against a fresh system and measures it: the Idle
// phase if the scenario has one (warm-up, then a measured interval of the
// idle load alone), then Load's warm-up and measured interval, then the
// drain.
func execute(sc *Scenario, entry systemEntry, opts Options) (Result, error) {
	runtime.GC() // do not bill this run for the previous one's garbage
	sys := sc.newSystem(entry, opts)
	r := newRun(sys, opts)
	defer r.cancel()
	if err := sys.Start(r.ctx, Hooks{OnMessage: r.onMessage, EchoDelay: sc.EchoDelay}); err != nil {
		sys.Close()
		return Result{}, err
	}
	var payload []byte
	if !sc.NoPayload {
		payload = make([]byte, sc.PayloadSize(opts))
		for i := range payload {
			payload[i] = byte(i)
		}
	}
	if sc.Idle != nil {
		sc.Idle(r, payload)
		time.Sleep(opts.Warmup)
		r.idle.start.Store(r.since(time.Now()))
		time.Sleep(opts.Duration)
		r.idle.end.Store(r.since(time.Now()))
	}
	sc.Load(r, payload)

	var begin, end snapshot
	if r.aborted() == nil {
		time.Sleep(opts.Warmup)
		r.measure.start.Store(r.since(time.Now()))
		begin = r.snapshot()
		time.Sleep(opts.Duration)
		end = r.snapshot()
		r.measure.end.Store(r.since(end.at))
	}

	r.stopping.Store(true)
	close(r.stopped)
	drainUntil := time.Now().Add(opts.Drain)
	loadDone := waitGroupDone(&r.load)
	drained := waitUntil(drainUntil, loadDone, func() bool {
		sent, delivered, failed := r.accounting()
		return delivered+failed >= sent
	})
	close(r.bgStop)
	r.bg.Wait()

	res := r.result(sc, entry.Name, begin, end)
	res.Drained = drained

	r.cancel() // unblock calls still waiting on the context
	closeErr := sys.Close()
	select {
	case <-loadDone:
	case <-time.After(opts.Drain):
		return res, errors.New("load goroutines still blocked after Close")
	}
	if err := r.aborted(); err != nil {
		return res, errors.Join(err, closeErr)
	}
	return res, closeErr
}

// newSystem returns a new system of entry, set up as sc runs it: an
// internode system gets sc.Tune.
func (sc *Scenario) newSystem(entry systemEntry, opts Options) System {
	sys := entry.New()
	if sc.Tune != nil {
		if s, ok := sys.(*internodeSystem); ok {
			s.Tune(func(c *transport.Config) { sc.Tune(c, opts) })
		}
	}
	return sys
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
