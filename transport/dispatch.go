package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// aliases reports whether a starts inside b's backing array.
func aliases(a, b []byte) bool {
	if len(a) == 0 || cap(b) == 0 {
		return false
	}
	pa := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	pb := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa >= pb && pa < pb+uintptr(cap(b))
}

// ownResponse returns a handler's response, copied if it lies in buf,
// the buffer its request was read into, and the writer may not send it
// from there. A batch frame (lent false) goes back to the pool when its
// last message is done, while the writer may still need the response (a
// large response is sent from where it is). A large message's own buffer
// (lent) is kept for the writer instead of going back to the pool, but
// only a response of at least half of it: a smaller one would hold the
// whole buffer while its queue counts only the response's bytes.
func ownResponse(resp, buf []byte, lent bool) []byte {
	if !aliases(resp, buf) || lent && 2*len(resp) >= cap(buf) {
		return resp
	}
	return bytes.Clone(resp)
}

// handle runs one message's handler and answers a request; it returns the
// response it queued, if any. Every message that reaches it ends in one
// inbound outcome: received (handed to its handler) or dropped with a
// reason.
func (ic *inConn) handle(w *work) []byte {
	t := ic.t
	h, deadline := &w.h, w.deadline
	isRequest := h.Flags&wire.FlagExpectsResponse != 0
	select {
	case <-t.closed:
		ic.counters.drop(ReasonClosed)
		return nil
	default:
	}
	if isRequest {
		select {
		case <-ic.done:
			// Its response has nowhere to go, and its caller has failed
			// it already (and may have tried it again elsewhere).
			ic.counters.drop(ReasonConnectionReset)
			return nil
		default:
		}
	}
	// The clock is read for every message, though a one-way message
	// without a deadline needs no reading: skipping it made the receiver
	// cheaper (0.93x the CPU a message in the bench's small scenario) and
	// the scenario slower (0.96x and 0.91x the messages a second in two
	// sets of 6 alternated runs), its writer then writing smaller batches.
	now := time.Now()
	if deadline != 0 && int64(now.Sub(processStart)) >= deadline {
		ic.counters.drop(ReasonExpired)
		return nil
	}
	ctx, cancel := t.ctx, context.CancelFunc(nil)
	var expires time.Time
	if deadline != 0 {
		expires = wallDeadline(deadline, now)
		ctx, cancel = newHandlerContext(t.ctx, expires, now)
	} else if isRequest {
		ctx, cancel = newHandlerContext(t.ctx, time.Time{}, now)
	}
	if cancel != nil {
		defer cancel()
	}
	if isRequest {
		if reason, ok := ic.peer.cancels.start(w, cancel); !ok {
			ic.counters.drop(reason) // its caller gave up, or its connection ended, before it started
			return nil
		}
	}
	ic.counters.receive(len(w.payload))
	ctx, span := t.tel.handlerSpan(ctx, h.Params, ic.from, w.verb.name)
	m := &w.msg
	*m = Message{From: ic.from, Verb: Verb(h.Verb), ID: h.ID, Lane: ic.lane, Conn: ic.id,
		CreatedAt: time.Unix(0, h.CreatedAt), Payload: w.payload, IsRequest: isRequest}
	if deadline != 0 {
		m.ExpiresAt = expires
	}
	returned := false
	defer func() {
		if !returned {
			// The handler ended its goroutine (runtime.Goexit): nothing
			// stops that, but its message is answered on the way out,
			// as a panic's is.
			t.log.Error("internode: handler ended its goroutine", "peer", ic.from, "verb", w.verb.name)
			ic.handled(w, span, nil, errHandlerExited)
		}
	}()
	resp, err := ic.serveMessage(ctx, w.handler, m)
	returned = true
	return ic.handled(w, span, resp, err)
}

// handled ends w's handler's span and counts its outcome, answering a
// request with resp or err; it returns the response it queued, if any.
func (ic *inConn) handled(w *work, span trace.Span, resp []byte, err error) []byte {
	endSpan(span, err)
	w.msg = Message{}
	if w.h.Flags&wire.FlagExpectsResponse != 0 {
		if ic.peer.cancels.finish(w) {
			return nil // its caller no longer waits for an answer
		}
		resp = ownResponse(resp, w.f.buf, w.f.large != nil)
		ic.t.respond(ic, &w.h, w.deadline, resp, handlerFailure(err))
		if !w.verb.inline {
			ic.answerer().breakHold() // not to wait for the reader's Inline handlers
		}
		return resp
	}
	if err != nil {
		ic.counters.handlerFailed() // received, and then failed: not a drop
	}
	return nil
}

// serveMessage calls the handler, turning a panic into a handler error so that one
// bad message cannot take the node down.
func (ic *inConn) serveMessage(ctx context.Context, h Handler, m *Message) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			ic.t.log.Error("internode: handler panicked", "peer", m.From, "verb", ic.t.verbName(m.Verb), "panic", r)
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.ServeMessage(ctx, m)
}

// errHandlerExited is the error of a handler that ended its goroutine
// with runtime.Goexit (a test's t.FailNow, or a require, failing in it),
// which a recover does not see. That goroutine ends all the same; the
// deferred calls on its way out answer the message as a panic's is
// answered, give back what it held, and hand the goroutine's other work
// to a new one (runStage, runQueue), so that the verb goes on serving.
var errHandlerExited = errors.New("handler ended its goroutine (runtime.Goexit)")

// handlerFailure is err, a handler's (a FileHandler's too), as its
// requester is told it: failureCode then sends the transport's failure
// when ReasonOf names it overloaded, too large or expired, which a
// handler may pass on, and ErrHandler with err's message for anything
// else. Only context.Canceled and ErrUnknownVerb need stripping here,
// since they have failure codes of their own: from a call the handler
// made, they are not the requester's own cancel or a verb this node
// lacks, which are the transport's to report.
func handlerFailure(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrUnknownVerb) {
		return errors.New(err.Error())
	}
	return err
}

// respond sends a request's response, or its failure, back on the
// connection the request came on, ic, the other way, through the one send
// path (sendOn). deadline is the request's, on this node's clock: the
// response keeps what is left of it.
func (t *Transport) respond(ic *inConn, req *wire.Header, deadline int64, payload []byte, herr error) {
	if herr == nil && len(payload) > t.cfg.Memory.MaxMessageSize {
		herr = fmt.Errorf("%w: response of %d bytes", ErrTooLarge, len(payload))
	}
	flags := wire.FlagResponse
	if herr != nil {
		flags |= wire.FlagFailure
		payload = wire.AppendFailure(nil, wire.Failure{Code: failureCode(herr), Message: herr.Error()})
	}
	h := wire.Header{Flags: flags, ID: req.ID, Verb: req.Verb}
	if err := t.sendOn(t.ctx, ic.answerer(), &h, deadline, payload, false); err != nil {
		t.log.Debug("internode: response not sent", "peer", ic.from, "err", err)
		// Counted by sendOn; refused before it was queued, it was not
		// handed to OnDropped there, as one that fails once queued is.
		if hook := t.cfg.OnDropped; hook != nil {
			hook(DroppedMessage{Peer: ic.from, Lane: ic.lane, Verb: Verb(h.Verb), ID: h.ID,
				Response: true, Reason: reasonOf(err), Payload: payload})
		}
	}
}

// work is one message on its way to its handler: waiting in its verb's
// stage or its connection's ordered queue, or running. It holds its
// frame, whose capacity is given back when the frame's last message is
// done.
type work struct {
	ic       *inConn
	f        *inFrame
	h        wire.Header
	payload  []byte
	deadline int64 // on this node's monotonic clock (monoNanos); 0: none
	queuedAt int64 // when it was handed over (monoNanos)
	verb     *verbInfo
	handler  Handler
	whole    bool    // the whole frame: its messages, one-way and of one verb, run in turn
	ran      int     // the whole frame's messages whose handlers have run, or run now
	msg      Message // what the handler is given
	slot     int64   // its slot's number in the queue it waits in (workQueue)
	expiry   int     // its index in its queue's expiries, plus one; 0: none
	// The requester's cancel (cancels): set while it runs, under the
	// peer's cancels lock.
	cancel   context.CancelFunc
	canceled bool
}

// withdraw takes w, a request its caller cancelled, out of the queue it
// waits in for its turn — its verb's stage, or its connection's ordered
// queue — and reports whether it waited there. One taken for its turn
// already is dropped as it starts (cancels.start); a streamed request's
// (streamLarge) and an Inline verb's do not wait in a queue.
func (w *work) withdraw() bool {
	switch {
	case w.verb == nil || w.verb.inline:
		return false
	case w.verb.runsOrdered(true):
		return w.ic.dispatch.withdraw(w)
	default:
		return w.verb.stage.withdraw(w)
	}
}

// workCost is the inbound capacity a message's work takes while it waits
// and runs, beyond its frame's bytes: a frame of many tiny messages holds
// its weight.
const workCost = int64(unsafe.Sizeof(work{}))

var workPool = sync.Pool{New: func() any { return new(work) }}

// route hands one message of frame f to its handler's way of running: its
// connection's ordered queue for the verb, or the verb's stage; or it
// runs an Inline verb's handler itself. Else it never blocks the reader.
// A message for no handler is dropped here (and a request answered with
// ErrUnknownVerb), and a request its caller already cancelled is dropped
// as cancelled. onReader says the connection's reader calls it.
func (ic *inConn) route(f *inFrame, h *wire.Header, deadline int64, payload []byte, onReader bool) {
	t := ic.t
	isRequest := h.Flags&wire.FlagExpectsResponse != 0
	handler, v := t.handlerFor(Verb(h.Verb))
	if handler == nil {
		ic.counters.drop(ReasonUnknownVerb)
		if isRequest {
			t.respond(ic, h, deadline, nil, fmt.Errorf("%w %d", ErrUnknownVerb, h.Verb))
		}
		return
	}
	if isRequest && !ic.beginAnswer(h, deadline) {
		return
	}
	w := workPool.Get().(*work)
	*w = work{ic: ic, f: f, h: *h, payload: payload, deadline: deadline, queuedAt: monoNanos(),
		verb: v, handler: handler}
	if isRequest && !ic.peer.cancels.add(w) {
		ic.counters.drop(ReasonCanceled)
		workPool.Put(w)
		ic.answered()
		return
	}
	f.refs.Add(1)
	t.working.Add(1)
	switch {
	case v.inline:
		ic.runInline(w, onReader)
	case v.runsOrdered(isRequest):
		ic.runOrdered(w)
	case v.stage.submit(w):
		t.wg.Add(1)
		go t.runStage(v.stage)
	}
}

// beginAnswer counts a request as being answered, until answered, and
// reports true; or, when Shutdown has begun, answers it at once with
// ErrOverloaded — the node is going away, its caller had better ask
// another — and reports false. Shutdown waits for the requests being
// handled when it began, not for ones that keep coming. The count comes
// first: either a Shutdown that began meanwhile sees it, or this sees
// the Shutdown.
func (ic *inConn) beginAnswer(h *wire.Header, deadline int64) bool {
	ic.answering.Add(1)
	if !ic.t.closing.Load() {
		return true
	}
	ic.counters.drop(ReasonClosed)
	ic.t.respond(ic, h, deadline, nil, errShuttingDown)
	ic.answered()
	return false
}

var errShuttingDown = fmt.Errorf("%w: the node is shutting down", ErrOverloaded)

// answered counts a request whose handler returned, its answer queued;
// the last one tells a waiting Shutdown to look again.
func (ic *inConn) answered() {
	if ic.answering.Add(-1) == 0 {
		ic.t.signalDrained()
	}
}

// runInline runs an Inline verb's work at once, on the goroutine that
// routes it: the reader, or, for an empty large message granted late,
// the goroutine that granted it. The connection's Inline handlers run one
// at a time whichever runs them. The reader takes the replies' writer
// role first, if it can, to write the answers of the frame's Inline
// handlers together once it has routed the frame (writeReplies).
func (ic *inConn) runInline(w *work, onReader bool) {
	if onReader && !ic.holdsReplies && w.h.Flags&wire.FlagExpectsResponse != 0 {
		ic.holdsReplies = ic.answerer().hold()
	}
	if ic.lane != routing.Large && !ic.inlineHeld {
		// Only the reader runs them on these lanes. The frames behind
		// this one wait in the socket's receive queue while they run:
		// the reader samples it, from the frame's first Inline handler
		// until handleBatch is done with the frame (arrivals). The large
		// lane's reader holds itself where it runs them.
		ic.inlineHeld = true
		ic.holdStarts()
	}
	ic.inlineMu.Lock()
	defer ic.inlineMu.Unlock()
	// Read first: work that is not a whole frame is let go of, to the
	// pool, by the time the deferred call runs.
	returned, whole := false, w.whole
	defer func() {
		if !returned && whole {
			// The handler ended the reader's goroutine (a whole frame
			// runs on no other): the reader that takes over runs the
			// rest of the frame first (reading).
			ic.resume = func() {
				defer ic.inlineHoldEnds()
				ic.runInline(w, false)
			}
		}
	}()
	ic.t.runWork(w)
	returned = true
}

// writeReplies writes the responses of the Inline handlers the reader
// has just run, all together, if it holds the replies' writer role (see
// route): from its own goroutine when the write cannot block, as a
// handler's goroutine writes a lone response; otherwise, or for whatever
// else is queued, a writer goroutine takes over. A frame of requests is
// then answered in one write, with no hand-off, however many it held.
func (ic *inConn) writeReplies() {
	if ic.holdsReplies {
		ic.holdsReplies = false
		if w := ic.replies.Load(); w.unhold() { // made for the hold
			w.writeFromCaller()
		}
	}
}

// queueWhole hands batch frame f over as one piece of work when every
// message in it is a one-way message for verb, and verb runs those in
// order: on its connection's ordered queue, or, Inline, on the reader
// itself. The common case of a stream of one verb costs one piece of work
// a frame, not one a message. deadline is the latest of the messages'
// (monoNanos; 0 if one has none): past it, the frame, waiting, leaves its
// queue (expiries). It reports false when that does not hold.
func (ic *inConn) queueWhole(f *inFrame, verb uint32, deadline int64) bool {
	handler, v := ic.t.handlerFor(Verb(verb))
	if handler == nil || !v.inline && !v.runsOrdered(false) {
		return false
	}
	w := workPool.Get().(*work)
	*w = work{ic: ic, f: f, whole: true, verb: v, handler: handler}
	w.h.Verb = verb
	ic.holdWork(f, 1)
	f.refs.Store(1)
	ic.t.working.Add(1)
	if v.inline {
		ic.runInline(w, false) // one-way messages: no responses to hold
		return true
	}
	w.queuedAt = monoNanos()
	w.deadline = deadline // until it runs: when the last of its messages expires
	ic.runOrdered(w)
	return true
}

// runWork runs w's handler — for each of its frame's messages not yet
// run, if it is the whole frame — and lets go of w. A handler that ends
// its goroutine (runtime.Goexit) has w let go of on the way out, but a
// whole frame's: the rest of its messages are for the goroutine that
// takes over to run (runQueue, runInline).
func (t *Transport) runWork(w *work) {
	ic, f := w.ic, w.f
	if w.whole {
		i := 0
		_ = forEachMessage(f.buf, uint32(t.maxFrame), &w.h, func(h *wire.Header, payload []byte) {
			if i++; i <= w.ran {
				return
			}
			// Before it runs: a handler that ends its goroutine has had
			// its turn.
			w.ran = i
			w.payload, w.deadline = payload, h.Deadline(f.arrived) // checked when read: it decodes
			ic.handle(w)
		})
	} else {
		returned := false
		defer func() {
			if !returned {
				t.doneWork(w) // the handler ended its goroutine
			}
		}()
		if resp := ic.handle(w); f.large != nil && aliases(resp, f.buf) {
			// The response is the lent payload (an echo): the writer sends it
			// from there, so it must not go back to the pool.
			f.buf = nil
		}
		returned = true
	}
	t.doneWork(w)
}

// dropWithdrawn counts w, a request withdrawn from its queue as its
// caller's cancel came (cancels.cancel), dropped as cancelled, and lets go
// of it: its frame's room comes back with the frame's last message.
func (t *Transport) dropWithdrawn(w *work) {
	w.ic.counters.drop(ReasonCanceled)
	t.doneWork(w)
}

// dropExpired counts the messages of expired, work withdrawn from its
// queue as its deadline passed (expiries.rang, which holds t.wg for it),
// dropped as expired, and lets go of it: its frame's room comes back with
// the frame's last message.
func (t *Transport) dropExpired(expired []*work) {
	defer t.wg.Done()
	for _, w := range expired {
		n := 1
		if w.whole { // its messages, one-way and for handlers, none run yet
			n = 0
			var h wire.Header
			_ = forEachMessage(w.f.buf, uint32(t.maxFrame), &h, func(*wire.Header, []byte) { n++ })
		}
		for range n {
			w.ic.counters.drop(ReasonExpired)
		}
		t.doneWork(w)
	}
}

// doneWork lets go of w, its handlers run: its request is answered, and
// its part of its frame given back.
func (t *Transport) doneWork(w *work) {
	ic, f := w.ic, w.f
	if w.h.Flags&wire.FlagExpectsResponse != 0 {
		ic.peer.cancels.forget(w)
		ic.answered()
	}
	*w = work{}
	workPool.Put(w)
	ic.doneWith(f)
	if t.working.Add(-1) == 0 {
		t.signalDrained()
	}
}

// runStage is a stage's worker (see stage): it takes its turns until
// none is left, then waits idle to be woken, and exits when it is not.
func (t *Transport) runStage(s *stage) { t.runStageAfter(s, nil) }

// runStageAfter is runStage for a worker that takes over from one whose
// handler, for a message of done's, ended its goroutine: its first turn
// gives back that handler's place.
func (t *Transport) runStageAfter(s *stage, done *peer) {
	defer t.wg.Done()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	running := false // a handler runs, for done's message
	defer func() {
		if running {
			// It ended its goroutine (runtime.Goexit): another worker
			// takes over, with the turns this one had.
			t.wg.Add(1)
			go t.runStageAfter(s, done)
		}
	}()
	woken := done == nil
	for {
		for {
			now := time.Now()
			w, start := s.take(woken, done, now)
			woken = false
			if start {
				t.wg.Add(1)
				go t.runStage(s)
			}
			if w == nil {
				break
			}
			t.tel.stages.recordWait(w.verb.name, stageWait(now, w.queuedAt))
			done = w.ic.peer
			running = true
			t.runWork(w)
			running = false
		}
		done = nil
		if timer == nil {
			timer = time.NewTimer(stageIdle)
		} else {
			timer.Reset(stageIdle)
		}
		select {
		case <-s.wake:
			woken = true
			continue
		case <-timer.C:
		case <-t.closed:
		}
		if woken = s.retire(); !woken {
			return
		}
	}
}

// orderedQueue is one verb's messages on one connection, run one at a
// time in arrival order by a goroutine that runs while there are any.
type orderedQueue struct {
	queue   workQueue
	running bool
}

// maxKeptQueue is the largest ordered queue kept for reuse once empty.
const maxKeptQueue = 1024

// dispatchQueue holds an inbound connection's ordered queues, one per
// verb; a slow verb holds up only its own. Work holds its frame's
// capacity, so the queues are bounded in bytes by the inbound limits.
type dispatchQueue struct {
	mu     sync.Mutex
	byVerb map[uint32]*orderedQueue
	expiry expiries // the queued work with a deadline
	ended  bool     // the connection ended: its timer stops once nothing it times waits
}

// taken forgets w's deadline, w no longer waiting: once the connection
// has ended, the timer stops with the last work it times (end).
func (d *dispatchQueue) taken(w *work) {
	d.expiry.remove(w)
	if d.ended {
		d.expiry.stopIfIdle()
	}
}

// end stops the timer of a connection that ended, once nothing it times
// waits (taken): the timer holds the connection, and through it the
// transport, until the deadline it is set for.
func (d *dispatchQueue) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = true
	d.expiry.stopIfIdle()
}

// runOrdered queues w on its verb's ordered queue, starting its goroutine
// if it is not running.
func (ic *inConn) runOrdered(w *work) {
	d := &ic.dispatch
	d.mu.Lock()
	q := d.byVerb[w.h.Verb]
	if q == nil {
		if d.byVerb == nil {
			d.byVerb = make(map[uint32]*orderedQueue)
		}
		q = &orderedQueue{}
		d.byVerb[w.h.Verb] = q
	}
	q.queue.push(w)
	if wait, arm := d.expiry.add(w, w.queuedAt); arm {
		d.expiry.arm(wait, ic.expireOrdered)
	}
	start := !q.running
	q.running = true
	d.mu.Unlock()
	if start {
		ic.t.wg.Add(1)
		go ic.runQueue(q, nil)
	}
}

// runQueue runs q's work until it is empty, after the rest of whole
// frame rest, if any: the work of a runQueue whose handler ended its
// goroutine, which it takes over.
func (ic *inConn) runQueue(q *orderedQueue, rest *work) {
	defer ic.t.wg.Done()
	var running *work // whole frame work, while its handlers run
	returned := false
	defer func() {
		if !returned {
			// A handler ended its goroutine (runtime.Goexit): another
			// goroutine takes over, in order, from the next message.
			ic.t.wg.Add(1)
			go ic.runQueue(q, running)
		}
	}()
	if rest != nil {
		running = rest
		ic.t.runWork(rest)
		running = nil
	}
	d := &ic.dispatch
	for {
		d.mu.Lock()
		w := q.queue.pop(maxKeptQueue)
		if w == nil {
			q.running = false
			d.mu.Unlock()
			returned = true
			return
		}
		d.taken(w)
		d.mu.Unlock()
		if w.whole {
			running = w
		}
		ic.t.runWork(w)
		running = nil
	}
}

// withdraw takes w, a request whose caller cancelled it, out of its
// verb's ordered queue, and reports whether it waited there.
func (d *dispatchQueue) withdraw(w *work) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.byVerb[w.h.Verb]
	if q == nil || !q.queue.withdraw(w, maxKeptQueue) {
		return false
	}
	d.taken(w)
	return true
}

// expireOrdered takes the work whose deadline passed while it waited out
// of the connection's ordered queues, and drops it as expired
// (dropExpired), its room given back: their timer rings for it
// (expiries).
func (ic *inConn) expireOrdered() {
	d := &ic.dispatch
	d.mu.Lock()
	expired, t := d.expiry.rang(ic.expireOrdered)
	for _, w := range expired {
		d.byVerb[w.h.Verb].queue.withdraw(w, maxKeptQueue)
	}
	d.mu.Unlock()
	if len(expired) > 0 {
		t.dropExpired(expired)
	}
}

// busy reports whether any of the connection's ordered queues has work.
func (d *dispatchQueue) busy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.byVerb {
		if q.running {
			return true
		}
	}
	return false
}

// handOver routes a large message's frame, whole; onReader says the
// connection's reader calls it.
func (ic *inConn) handOver(f *inFrame, onReader bool) {
	ic.holdWork(f, 1)
	f.refs.Store(1)
	returned := false
	defer func() {
		if !returned {
			ic.handedOver(f, onReader) // an Inline handler ended its goroutine (runInline)
		}
	}()
	ic.route(f, f.large, f.deadline, f.buf, onReader)
	returned = true
	ic.handedOver(f, onReader)
}

func (ic *inConn) handedOver(f *inFrame, onReader bool) {
	if onReader {
		ic.writeReplies()
	}
	ic.doneWith(f)
}

// holdWork takes the weight of n messages' work for frame f, held with
// its bytes: beyond the limits, as the frame was read already, by at most
// one frame's messages.
func (ic *inConn) holdWork(f *inFrame, n int) {
	ic.account.Overdraw(int64(n) * workCost)
	f.held += int64(n) * workCost
}

// doneWith lets go of one reference to f — the reader's, or one message's
// — and gives back its capacity with the last.
func (ic *inConn) doneWith(f *inFrame) {
	if f.refs.Add(-1) == 0 {
		ic.releaseFrame(f)
	}
}
