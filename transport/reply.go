package transport

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/wire"
)

// replyWriter sends the responses to the requests an accepted connection
// carried back on that same connection, the other way: small ones as
// batch frames, large ones in parts at once (wire.CapEagerResponses), or
// once the requester has granted them room. The requester reads them on
// its own connection's back channel, so they never wait behind that
// peer's requests to it, and this node needs no connection of its own to
// the requester.
//
// It is an outbound lane's writer core — an outQueue, a frameWriter and a
// largeWriter — with a goroutine that runs while there is something to
// write; it writes under the connection's backMu, between beats.
type replyWriter struct {
	ic       *inConn
	small    outQueue // whole responses, for batch frames
	large    outQueue // responses above the large threshold
	account  *limit.Account
	counters *connCounters // the peer's outbound counters for this lane
	frames   frameWriter   // owned by the goroutine
	parts    largeWriter   // owned by the goroutine but for its inbox
	// lastWrite is when small responses were last written (monoNanos);
	// owned by the goroutine, or by a caller writing in its place.
	lastWrite int64

	mu      sync.Mutex // guards running
	running bool
	// held says the role (running) is the reader's, taken by hold for
	// its Inline handlers' answers, until unhold or breakHold ends it.
	held  atomic.Bool
	wake  chan struct{} // one slot
	timer *time.Timer   // wakes a writer waiting for grants to withdraw what expired
}

func newReplyWriter(ic *inConn) *replyWriter {
	w := &replyWriter{
		ic:       ic,
		account:  ic.peer.outAccount.Child(ic.t.limitsOut.Load().forLane(ic.lane), true),
		counters: &ic.peer.outbound[ic.lane],
		wake:     make(chan struct{}, 1),
	}
	w.frames.comp = ic.t.newCompressor(ic.lane, ic.caps, ic.conn.RemoteAddr(), w.counters)
	w.parts.eager = ic.caps&wire.CapEagerResponses != 0
	return w
}

// pendingReplies returns the responses queued or being written, and the
// bytes they hold (Stats' PendingMessages and PendingBytes).
func (ic *inConn) pendingReplies() (messages, bytes int) {
	w := ic.replies.Load()
	if w == nil {
		return 0, 0
	}
	return w.small.unfinished() + w.large.unfinished(), w.small.held() + w.large.held()
}

// repliesHeld reports whether responses hold capacity: queued, or being
// written.
func (ic *inConn) repliesHeld() bool {
	w := ic.replies.Load()
	return w != nil && (w.small.held() > 0 || w.large.held() > 0)
}

// enqueue queues one response. It never waits. Out of capacity, a small
// failure (ErrOverloaded) takes the response's place, beyond the limits by
// at most failureReserve, so that its caller learns at once rather than at
// its deadline; past that (a requester that does not read its answers
// while it sends more requests) the response is refused and its caller
// waits for its deadline. Once the connection has ended, every response is
// refused.
func (w *replyWriter) enqueue(_ context.Context, it outItem, header, payload []byte, _ bool) error {
	size := int64(len(header) + len(payload) + outItemCost)
	// Ahead of Sends waiting for outbound room: a response cannot wait,
	// and is not refused while there is room for it.
	if !w.account.TryTakeAhead(size) {
		header, payload = noRoomFor(it, header, payload)
		size = int64(len(header) + len(payload) + outItemCost)
		if !w.account.TryOverdraw(size, failureReserve) {
			return fmt.Errorf("%w: no room for the response, nor for a failure in its place", ErrOverloaded)
		}
	}
	q, copyPayload := &w.small, true
	if len(header)+len(payload) > w.ic.t.cfg.Lanes.LargeThreshold {
		q, copyPayload = &w.large, false
	}
	if _, err := q.push(it, header, payload, copyPayload); err != nil {
		w.account.Release(size)
		return err
	}
	w.mu.Lock()
	start := !w.running
	w.running = true
	w.mu.Unlock()
	switch {
	case start && q == &w.small && w.mayWriteFromCaller(it.enqueuedAt):
		w.writeFromCaller()
	case start:
		w.ic.t.wg.Add(1)
		go w.run()
	default:
		w.signal()
	}
	return nil
}

// mayWriteFromCaller reports whether the response just queued at now,
// small, may be written by the goroutine that queued it — its handler's,
// usually — rather than by a goroutine started for it: when no response
// was written for callerWriteIdle (as for outbound lanes, a hand-off is
// cheap while responses flow), and no other request of the connection is
// being handled (whose answer the goroutine would gather with it).
// writeFromCaller then writes only what cannot block.
func (w *replyWriter) mayWriteFromCaller(now int64) bool {
	return now-w.lastWrite >= int64(w.ic.t.quietFor) && w.ic.answering.Load() <= 1
}

// writeFromCaller writes the small responses queued from the caller's
// goroutine, which started no writer goroutine and so holds the writer's
// role (running), then lets the role go as run does. It writes only when
// the write cannot block, so that a requester that stopped reading never
// holds a handler, nor a reader that ran Inline handlers: the back
// channel is free (a beat is not being written into a full socket), and
// both what is queued and the socket's unacknowledged bytes are within
// callerWriteLimit. Otherwise, and for whatever was queued meanwhile, a
// goroutine takes over.
func (w *replyWriter) writeFromCaller() {
	limit := w.ic.t.callerWriteLimit(w.ic.lane)
	select {
	case <-w.ic.done:
	default:
		if _, bytes := w.small.pending(); bytes > limit || !w.ic.backMu.TryLock() {
			break
		}
		low := w.ic.backQueueLow(limit)
		if low {
			// What it writes is what it takes, checked in the same step:
			// other handlers may have queued more since it looked.
			b, _ := w.small.takeWithin(limit)
			low = b != nil || !w.small.has() // more than it may write: the goroutine's
			switch sent, err := w.writeSegment(b, monoNanos()); {
			case err != nil:
				w.ic.backFailed(err)
			case sent > 0:
				w.counters.callerWrites.Add(1)
			}
		}
		w.ic.backMu.Unlock()
		if low && w.mayExit() {
			return
		}
	}
	w.ic.t.wg.Add(1)
	go w.run() // it fails what is queued if the connection has ended
}

// failureReserve is how far beyond the outbound limits (per connection, per
// peer and node-wide) the failures that take the place of responses with
// no room may go: a few hundred of them. Where SetLimits lowered a limit
// below what was held, or the connection holds a response above its limit
// (the one message an empty connection may take so), it counts from what
// was held, until that much is given back (limit.Account.TryOverdraw).
const failureReserve = 64 << 10

// noRoomFor returns the failure that stands for response it (header and
// payload) when there is no room for it; a failure stands for itself.
func noRoomFor(it outItem, header, payload []byte) ([]byte, []byte) {
	if wire.MessageFlags(header[0])&wire.FlagFailure != 0 {
		return header, payload
	}
	failure := wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded, Message: "no room to send the response"})
	h := wire.Header{Flags: wire.FlagResponse | wire.FlagFailure, ID: it.id, Verb: it.verb,
		CreatedAt: time.Now().UnixNano(), PayloadLength: uint32(len(failure))}
	if it.expiresAt != 0 {
		h.TTL = 1 // set as it is written, from it.expiresAt
	}
	return wire.AppendHeader(nil, &h), failure
}

// drop counts a response refused before it was queued (outLane).
func (w *replyWriter) drop(r Reason) { w.counters.drop(r) }

func (w *replyWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run writes until nothing is left, or the connection ends.
func (w *replyWriter) run() {
	defer w.ic.t.wg.Done()
	for {
		select {
		case <-w.ic.done:
			w.exit()
			return
		default:
		}
		now := monoNanos()
		switch {
		case w.small.has():
			w.gather()
			if _, err := w.writeSmall(); err != nil {
				w.ic.backFailed(err)
			}
		case w.parts.busy(now) || w.large.has():
			if err := w.writeLarge(); err != nil {
				w.ic.backFailed(err)
			}
			w.ic.t.waker.yieldAfterPart()
		case w.parts.idle():
			if w.mayExit() {
				return
			}
		default:
			w.waitForGrants()
		}
	}
}

// gather yields, a few turns of the scheduler at most, while requests of
// the connection are still being handled: their answers are likely a
// moment away, and better written together.
func (w *replyWriter) gather() {
	for range maxGatherYields {
		if w.ic.answering.Load() == 0 {
			return
		}
		runtime.Gosched()
	}
}

// maxGatherYields bounds gather.
const maxGatherYields = 8

// writeSmall writes one segment of small responses as batch frames, and
// reports how many it wrote. It reads the clock once it has the back
// channel, which a beat stuck in a full socket may have held for seconds:
// what expired meanwhile is dropped, not written.
func (w *replyWriter) writeSmall() (int, error) {
	w.ic.backMu.Lock()
	defer w.ic.backMu.Unlock()
	return w.writeSmallLocked(monoNanos())
}

// writeSmallLocked is writeSmall for a caller that holds backMu.
func (w *replyWriter) writeSmallLocked(now int64) (int, error) {
	b, _ := w.small.take()
	return w.writeSegment(b, now)
}

// writeSegment writes b, a segment taken from the small responses' queue
// (nil: none), as batch frames; the caller holds backMu.
func (w *replyWriter) writeSegment(b *batch, now int64) (int, error) {
	if b == nil {
		return 0, nil
	}
	defer func() { w.release(w.small.release(b)) }()
	w.setWriteDeadline()
	sent, _, err := w.frames.writeBatch(w.ic.conn, b, w.ic.t.maxFrame, now, w)
	w.lastWrite = monoNanos()
	return sent, err
}

// writeLarge writes one round of large responses; it reads the clock once
// it has the back channel, as writeSmall does.
func (w *replyWriter) writeLarge() error {
	w.ic.backMu.Lock()
	defer w.ic.backMu.Unlock()
	w.setWriteDeadline()
	return w.parts.step(w.ic.conn, &w.frames, &w.large, w.ic.t.maxFrame, monoNanos(), w)
}

// waitForGrants waits for a grant, or for a begun response to expire: it
// wakes at the earliest deadline in flight, not a keepalive interval on.
func (w *replyWriter) waitForGrants() {
	wait := w.parts.untilExpiry(monoNanos(), wire.KeepaliveInterval)
	if w.timer == nil {
		w.timer = time.NewTimer(wait)
	} else {
		w.timer.Reset(wait)
	}
	select {
	case <-w.wake:
	case <-w.timer.C:
		// Those that wait to begin fail here, or the deadline that woke
		// this would wake it again at once; begun ones by the next step.
		w.parts.pruneExpired(&w.large, monoNanos(), w)
	case <-w.ic.done:
	}
	w.timer.Stop()
}

// hold takes the writer's role for the connection's reader, which then
// runs Inline handlers and writes their responses together after them
// (inConn.writeReplies), and reports whether it did: not while a writer
// goroutine, or another caller, has it. Responses queued meanwhile see
// the role taken and leave them to the holder; but a response of another
// handler, running on a goroutine of its own, takes the role from it
// (breakHold), so as not to wait for the reader's Inline handlers.
func (w *replyWriter) hold() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running {
		return false
	}
	w.running = true
	w.held.Store(true)
	return true
}

// unhold ends the reader's hold, and reports whether the reader still
// had the role: then it writes what it holds (writeFromCaller) and lets
// the role go; otherwise a writer goroutine took it over (breakHold).
func (w *replyWriter) unhold() bool { return w.held.Swap(false) }

// breakHold is called once the response of a handler that is not the
// reader's Inline one has been queued: if the reader holds the writer's
// role, that response would wait for the reader's Inline handlers, a
// slow one included, so a writer goroutine takes the role over at once.
func (w *replyWriter) breakHold() {
	if w.held.Load() && w.held.Swap(false) {
		w.ic.t.wg.Add(1)
		go w.run()
	}
}

// mayExit lets the goroutine go when, under mu, nothing is queued: a
// response queued meanwhile either saw running set (and is seen here) or
// starts a new goroutine.
func (w *replyWriter) mayExit() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.small.has() || w.large.has() {
		return false
	}
	w.running = false
	w.ic.t.signalDrained()
	return true
}

// exit fails what is left once the connection has ended: the
// requester's calls on it fail there with ErrConnectionReset.
func (w *replyWriter) exit() {
	w.parts.failAll(&w.large, ReasonConnectionReset, ErrConnectionReset, w)
	w.failQueued()
	w.mu.Lock()
	w.running = false
	w.mu.Unlock()
	// A response queued after that, before running was cleared, saw
	// running set: fail it too. (Once close has run, none can be.)
	w.failQueued()
	w.ic.t.signalDrained() // nothing left for a Shutdown to wait for here
}

// failQueued fails what the queues hold.
func (w *replyWriter) failQueued() {
	w.failBatches(&w.small, w.small.drain())
	w.failBatches(&w.large, w.large.drain())
}

// failBatches fails every message of bs, taken from q, with
// ReasonConnectionReset.
func (w *replyWriter) failBatches(q *outQueue, bs []*batch) {
	for _, b := range bs {
		for i := range b.items {
			m := b.items[i].msg(b.buf.B)
			w.failed(&m, ReasonConnectionReset, ErrConnectionReset)
		}
		w.release(q.release(b))
	}
}

// close refuses further responses and fails what is queued; a running
// goroutine fails what it holds on its way out. Called once the
// connection has ended.
func (w *replyWriter) close() {
	w.failBatches(&w.small, w.small.shut(ErrConnectionReset))
	w.failBatches(&w.large, w.large.shut(ErrConnectionReset))
}

func (w *replyWriter) setWriteDeadline() {
	if d := w.ic.t.cfg.Timeouts.Write; d > 0 {
		_ = w.ic.conn.SetWriteDeadline(time.Now().Add(d))
	}
}

// grant hands the writer the requester's grant or refusal of a large
// response; false: the requester sends more than it was asked for.
func (w *replyWriter) grant(f backFrame) bool {
	if !w.parts.deliver(f) {
		return false
	}
	w.signal()
	return true
}

// The outSink the writer cores report to.

func (w *replyWriter) wrote(messages, bytes, responses int) {
	w.counters.wrote(messages, bytes, responses)
}

func (w *replyWriter) failed(m *outMsg, reason Reason, _ error) {
	w.counters.dropped[reason].Add(1)
	if hook := w.ic.t.cfg.OnDropped; hook != nil {
		hook(DroppedMessage{Peer: w.ic.from, Lane: w.ic.lane, Verb: Verb(m.verb), ID: m.id,
			Response: true, Reason: reason, Payload: m.payload})
	}
}

func (w *replyWriter) release(n int64) { w.account.Release(n) }

func (w *replyWriter) requestWritten(uint64) {}
