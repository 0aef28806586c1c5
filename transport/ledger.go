package transport

// The ledger: every outcome of every message is counted here, by one
// method per kind of outcome, and nowhere else. On the sending side a
// message handed to a lane is written (connCounters.wrote) or dropped with
// a reason (outConn.failed, which also fails its request and tells
// OnDropped; connCounters.drop when the lane refused it at once, and
// respond tells OnDropped of a response so refused). On the
// receiving side a message that arrives is received — handed to its
// handler or its waiting request (inCounters.receive) — or dropped with a
// reason (inCounters.drop). Stats reads these counters; the metrics read
// Stats.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// wrote counts one write (outSink).
func (c *outConn) wrote(messages, bytes, responses int) {
	c.counters.wrote(messages, bytes, responses)
	c.measureSendQueue()
}

// release gives back outbound capacity (outSink).
func (c *outConn) release(n int64) { c.account.Release(n) }

// requestWritten notes the connection a request went out on (outSink).
func (c *outConn) requestWritten(id uint64) { c.t.calls.written(id, c.conn.serial) }

// failed records a message that will not be written, fails its request
// and tells Config.OnDropped (outSink). It is the one place an outbound
// message fails once it was queued.
func (c *outConn) failed(m *outMsg, reason Reason, err error) {
	c.counters.dropped[reason].Add(1)
	if m.isRequest {
		switch {
		case err == nil && reason == ReasonExpired:
			err = errRequestExpired // a request expires at its context's deadline
		case err == nil:
			err = reason.Err()
		case !errors.Is(err, reason.Err()):
			err = fmt.Errorf("%w: %w", reason.Err(), err) // a socket's error, say
		}
		c.t.calls.fail(m.id, &OpError{Op: "request", Peer: c.peer.id, Lane: c.lane, Err: err})
	}
	if hook := c.t.cfg.OnDropped; hook != nil && !m.isCancel {
		hook(DroppedMessage{Peer: c.peer.id, Lane: c.lane, Verb: Verb(m.verb), ID: m.id,
			Response: m.isResponse, Request: m.isRequest, Reason: reason, Payload: m.payload})
	}
}

// failQueued fails every message queued or in flight with reason. It
// takes what is queued before it fails any: a failure returns to its
// caller (and OnDropped), who may queue more at once, and what comes
// then is for the next dial, not this one's error.
func (c *outConn) failQueued(reason Reason, err error) {
	for _, b := range c.queue.drain() {
		c.failBatch(b, reason, err)
	}
	c.large.failAll(&c.queue, reason, err, c)
}

// failBatch fails every message of b and releases it.
func (c *outConn) failBatch(b *batch, reason Reason, err error) {
	for i := range b.items {
		m := b.items[i].msg(b.buf.B)
		c.failed(&m, reason, err)
	}
	c.release(c.queue.release(b))
}

// connCounters are one outbound lane's counters, kept by its peer.
type connCounters struct {
	sent, sentBytes, writes   atomic.Uint64
	callerWrites              atomic.Uint64 // of writes, those made by a producer (writeFromCaller)
	responses                 atomic.Uint64 // of sent: responses to the peer's requests
	connects, connectFailures atomic.Uint64
	dropped                   [NumReasons]atomic.Uint64
	// Batch frames compressed, and their bytes before and after; frames
	// sent as they were on a connection that compresses, and of those the
	// ones tried that did not shrink enough.
	compressedFrames, compressIn, compressOut atomic.Uint64
	compressSkipped, compressMisses           atomic.Uint64
}

// inCounters are what arrived from one peer on one lane.
type inCounters struct {
	received, receivedBytes   atomic.Uint64
	compressedFrames          atomic.Uint64 // batch frames that arrived compressed
	handlerErrors             atomic.Uint64 // of received one-way messages, those whose handler failed
	throttled, throttledNanos atomic.Uint64
	dropped                   [NumReasons]atomic.Uint64
	remoteDropped             [NumReasons]atomic.Uint64
}

// addFrom adds o's counts to c (for forgotten strangers); with take, it
// moves them, leaving o's at zero, so that a count is never in both.
func (c *connCounters) addFrom(o *connCounters, take bool) {
	add := func(dst, src *atomic.Uint64) { dst.Add(counted(src, take)) }
	add(&c.sent, &o.sent)
	add(&c.sentBytes, &o.sentBytes)
	add(&c.writes, &o.writes)
	add(&c.callerWrites, &o.callerWrites)
	add(&c.responses, &o.responses)
	add(&c.connects, &o.connects)
	add(&c.connectFailures, &o.connectFailures)
	add(&c.compressedFrames, &o.compressedFrames)
	add(&c.compressIn, &o.compressIn)
	add(&c.compressOut, &o.compressOut)
	add(&c.compressSkipped, &o.compressSkipped)
	add(&c.compressMisses, &o.compressMisses)
	for r := range NumReasons {
		add(&c.dropped[r], &o.dropped[r])
	}
}

// addFrom adds o's counts to c, or with take moves them (connCounters'
// addFrom).
func (c *inCounters) addFrom(o *inCounters, take bool) {
	add := func(dst, src *atomic.Uint64) { dst.Add(counted(src, take)) }
	add(&c.received, &o.received)
	add(&c.receivedBytes, &o.receivedBytes)
	add(&c.compressedFrames, &o.compressedFrames)
	add(&c.handlerErrors, &o.handlerErrors)
	add(&c.throttled, &o.throttled)
	add(&c.throttledNanos, &o.throttledNanos)
	for r := range NumReasons {
		add(&c.dropped[r], &o.dropped[r])
		add(&c.remoteDropped[r], &o.remoteDropped[r])
	}
}

// counted reads a counter, or with take empties it.
func counted(a *atomic.Uint64, take bool) uint64 {
	if take {
		return a.Swap(0)
	}
	return a.Load()
}

// wrote counts one write that completed messages (responses among them)
// of bytes.
func (c *connCounters) wrote(messages, bytes, responses int) {
	c.writes.Add(1)
	c.sent.Add(uint64(messages))
	c.responses.Add(uint64(responses))
	c.sentBytes.Add(uint64(bytes))
}

// drop counts an outbound message that failed with reason.
func (c *connCounters) drop(r Reason) { c.dropped[r].Add(1) }

// receive counts a message handed to its handler or waiting request.
func (c *inCounters) receive(bytes int) {
	c.received.Add(1)
	c.receivedBytes.Add(uint64(bytes))
}

// drop counts an arriving message that reached no handler, with reason.
func (c *inCounters) drop(r Reason) { c.dropped[r].Add(1) }

// handlerFailed counts a received one-way message whose handler failed:
// not a second outcome, a note on the first.
func (c *inCounters) handlerFailed() { c.handlerErrors.Add(1) }

// remoteDrop counts a failure a peer reported for a message of this node
// that no call waited for.
func (c *inCounters) remoteDrop(r Reason) { c.remoteDropped[r].Add(1) }

// pause counts a wait for inbound capacity as it begins; paused adds how
// long a reader stopped reading, once it reads again.
func (c *inCounters) pause()                 { c.throttled.Add(1) }
func (c *inCounters) paused(d time.Duration) { c.throttledNanos.Add(uint64(d)) }
