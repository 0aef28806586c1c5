package transport

import (
	"io"
	"slices"
	"sync"
	"time"

	"github.com/internode/internode/wire"
)

// maxBegunLarge is how many large messages one connection has begun at
// once (asked for room, or being written); a receiver accepts up to
// maxInboundStreams.
const (
	maxBegunLarge     = 8
	maxInboundStreams = 64
)

// largeSend is one large message on its way.
type largeSend struct {
	outItem
	header  []byte // the encoded message header (a copy: the queue's buffer is recycled)
	stream  uint32
	granted bool // the receiver reserved room: parts may follow
	sent    int  // payload bytes written, or gathered for the write under way
	// begunOut: its FrameLargeBegin went out whole on this connection.
	// An empty message is all in it, and its receiver takes it as it
	// grants it: it cannot be sent again on the next (reset).
	begunOut bool
	beginEnd int // where its FrameLargeBegin ends in the write under way
}

// answerOnly reports whether only its receiver's answer ends ls: an empty
// message whose FrameLargeBegin, all of it, went out, which its receiver
// takes as it grants it. Withdrawn (expired, or its caller gone), its
// FrameLargeCancel could cross that grant: counted expired or cancelled
// here, it was received there. It is written once granted, and fails
// once refused; its receiver drops it if it expired meanwhile.
func (ls *largeSend) answerOnly() bool { return ls.begunOut && len(ls.payload) == 0 }

// partWrite is a part gathered for a write: where its frame starts in the
// write, and how much of its message was sent before it.
type partWrite struct {
	ls           *largeSend
	start, prior int
	end          int // where its frame ends in the write
}

// backFrame is a FrameGrant or FrameRefuse the connection's back-channel
// reader passes to the writer.
type backFrame struct {
	stream  uint32
	refused *wire.Failure // nil: granted
}

// largeWriter is the large lane's writer core. A message first asks the
// receiver for room (FrameLargeBegin carries its header alone); once the
// receiver grants it (FrameGrant on the back channel) its payload follows
// in parts, one part of every granted message per write, so a huge message
// never holds a smaller one behind it for its whole transfer. The receiver
// therefore never reads bytes it has no room for, and a connection cannot
// wedge on its own unread bytes. A message that expires while begun is
// withdrawn with FrameLargeCancel, but for an empty one (answerOnly).
//
// Owned by the connection's writer goroutine, except the inbox, which the
// back-channel reader fills.
type largeWriter struct {
	waiting    []*largeSend // FIFO, not begun
	begun      []*largeSend // asked or granted, in the order they began
	nextStream uint32
	parts      []partWrite // the parts of the write under way
	// eager: the receiver takes every message without granting it
	// (responses to a requester that agreed wire.CapEagerResponses), so
	// parts follow each FrameLargeBegin at once; a refusal withdraws the
	// rest with a FrameLargeCancel.
	eager bool

	mu    sync.Mutex
	inbox []backFrame
	// shut: the connection was reset and the next has not begun; what a
	// back-channel reader of the old one still delivers is dropped, or a
	// stale grant would count as work and the lane would dial for it.
	shut bool
	// flying is the streams of the messages the writer had begun and not
	// ended when it last looked, published before their FrameLargeBegin
	// is written: a grant or refusal of any other stream applies to
	// nothing. Not merely how many: with eager responses a requester
	// refuses responses written whole already, its refusals come in
	// bursts (a node writes all its pending ones at once), and queued
	// while any other response was in flight they overran maxInbox and
	// closed an honest requester's connection as bad input.
	flying []uint32
	// withdrawals are requests whose callers gave up (withdraw), for the
	// writer to withdraw at its next step.
	withdrawals []withdrawRequest
}

// withdrawRequest asks the writer to withdraw message id, for reason.
type withdrawRequest struct {
	id     uint64
	reason Reason
}

// maxWithdrawals bounds the withdrawals waiting for the writer. A caller
// gives up on each request once, so more wait only while the writer is
// stuck in a write; past it a request is written as if its caller waited.
const maxWithdrawals = 1024

// maxInbox bounds the grants and refusals waiting for the writer: a
// receiver sends at most one for each message begun, and the writer
// begins at most maxBegunLarge at once.
const maxInbox = 4 * maxInboundStreams

// deliver hands the writer a grant or refusal; the caller then wakes it.
// One that can apply to nothing (no message of its stream in flight) is
// dropped. It reports false when the inbox is full: the receiver sends
// grants or refusals it was never asked for.
func (w *largeWriter) deliver(f backFrame) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.shut || !slices.Contains(w.flying, f.stream):
		return true
	case len(w.inbox) >= maxInbox:
		return false
	}
	w.inbox = append(w.inbox, f)
	return true
}

// withdraw asks the writer to withdraw message id, a request whose caller
// gave up, and reports whether the writer should be woken for it. One the
// writer finished already is left alone.
func (w *largeWriter) withdraw(id uint64, reason Reason) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.withdrawals) >= maxWithdrawals {
		return false
	}
	w.withdrawals = append(w.withdrawals, withdrawRequest{id, reason})
	return true
}

// publishInFlight records the streams of the messages begun and not ended.
func (w *largeWriter) publishInFlight() {
	w.mu.Lock()
	w.flying = w.flying[:0]
	for _, ls := range w.begun {
		w.flying = append(w.flying, ls.stream)
	}
	w.mu.Unlock()
}

// open takes grants and refusals again: a new connection begins.
func (w *largeWriter) open() {
	w.mu.Lock()
	w.shut = false
	w.mu.Unlock()
}

// busy reports whether step has something to write at now: a message to
// begin, a granted one with bytes left, one to withdraw, or grants to
// apply. Messages that wait for a grant are not work: the grant wakes the
// writer.
func (w *largeWriter) busy(now int64) bool {
	w.mu.Lock()
	inbox := len(w.inbox) > 0
	withdrawals := len(w.withdrawals) > 0
	w.mu.Unlock()
	if inbox || withdrawals && !w.idle() || len(w.waiting) > 0 && len(w.begun) < maxBegunLarge {
		return true
	}
	for _, ls := range w.begun {
		if ls.granted || ls.expired(now) && !ls.answerOnly() {
			return true
		}
	}
	return false
}

// idle reports whether nothing at all is in flight.
func (w *largeWriter) idle() bool { return len(w.waiting) == 0 && len(w.begun) == 0 }

// nextExpiry is the earliest deadline of the messages in flight, 0 if none
// has one. A writer with nothing to write waits for grants, and must wake
// then to withdraw (or fail) what expired meanwhile: at the deadline, not
// at some later poll.
func (w *largeWriter) nextExpiry() int64 {
	var at int64
	for _, list := range [][]*largeSend{w.begun, w.waiting} {
		for _, ls := range list {
			if ls.expiresAt != 0 && !ls.answerOnly() && (at == 0 || ls.expiresAt < at) {
				at = ls.expiresAt
			}
		}
	}
	return at
}

// untilExpiry is how long a writer waiting for grants may sleep at now:
// no longer than longest, nor past the earliest deadline in flight.
func (w *largeWriter) untilExpiry(now int64, longest time.Duration) time.Duration {
	if at := w.nextExpiry(); at != 0 {
		return max(min(longest, time.Duration(at-now)), 0)
	}
	return longest
}

// admit moves newly queued messages in, copying their small headers out of
// the pooled batch buffer so that it can be recycled at once; each message
// now holds its own capacity.
func (w *largeWriter) admit(q *outQueue) {
	for {
		b := q.takeToFinish() // pending until forgotten
		if b == nil {
			return
		}
		for i := range b.items {
			it := b.items[i]
			ls := &largeSend{outItem: it, header: slices.Clone(b.buf.B[it.start : it.start+int32(it.headerLen)])}
			w.waiting = append(w.waiting, ls)
		}
		b.bytes = 0 // released message by message (forget), not with the segment
		q.release(b)
	}
}

// step writes one round: grants and refusals are applied, expired and
// given-up messages withdrawn, new ones begun and a part of every granted
// one written, all in one vectored write.
func (w *largeWriter) step(dst io.Writer, fw *frameWriter, q *outQueue, maxFrame int, now int64, sink outSink) error {
	w.admit(q)
	withdrawn := w.applyInbox(q, sink)
	withdrawn = append(withdrawn, w.applyWithdrawals(q, sink)...)
	w.begun = slices.DeleteFunc(w.begun, func(ls *largeSend) bool {
		if !ls.granted || len(ls.payload) > 0 {
			return false
		}
		// An empty payload (a verb pinned to this lane) is complete once
		// granted: its FrameLargeBegin was all of it.
		if ls.isRequest {
			sink.requestWritten(ls.id)
		}
		sink.wrote(1, len(ls.header), btoi(ls.isResponse))
		w.forget(q, ls, sink)
		return true
	})
	fw.reserve(3*maxBegunLarge + 1)
	for _, wd := range withdrawn {
		fw.add(wire.FrameLargeCancel, wd.stream, cancelFailure(wd.reason))
	}
	var cancelled []*largeSend
	kept := w.begun[:0]
	for _, ls := range w.begun {
		if ls.expired(now) && !ls.answerOnly() {
			fw.add(wire.FrameLargeCancel, ls.stream, cancelFailure(ReasonExpired))
			cancelled = append(cancelled, ls)
			continue
		}
		kept = append(kept, ls)
	}
	clear(w.begun[len(kept):])
	w.begun = kept
	for _, ls := range cancelled {
		w.fail(q, ls, ReasonExpired, nil, sink)
	}
	w.pruneExpired(q, now, sink)
	for len(w.begun) < maxBegunLarge && len(w.waiting) > 0 {
		ls := w.waiting[0]
		w.waiting[0] = nil
		w.waiting = w.waiting[1:]
		w.nextStream = w.nextStream%wire.MaxStream + 1
		ls.stream = w.nextStream
		ls.granted = w.eager
		if ls.expiresAt != 0 {
			_ = wire.SetTTL(ls.header, ls.expiresAt-now)
		}
		fw.add(wire.FrameLargeBegin, ls.stream, ls.header)
		ls.beginEnd = fw.buffered()
		w.begun = append(w.begun, ls)
	}
	if len(w.waiting) == 0 {
		w.waiting = nil // let the backing array go
	}
	w.parts = w.parts[:0]
	for _, ls := range w.begun {
		if !ls.granted || ls.sent == len(ls.payload) {
			continue
		}
		n := min(maxFrame, len(ls.payload)-ls.sent)
		start := fw.buffered()
		fw.add(wire.FrameLargeMore, ls.stream, ls.payload[ls.sent:ls.sent+n])
		w.parts = append(w.parts, partWrite{ls: ls, start: start, prior: ls.sent, end: fw.buffered()})
		ls.sent += n
	}
	parts := len(w.parts)
	w.publishInFlight() // before the begins go out: their grants may come at once
	if fw.empty() {
		return nil
	}
	if err := fw.flush(dst); err != nil {
		// A part of which not one byte went out was not sent: a message
		// none of whose payload left is sent again on the next
		// connection (reset). Once any byte of a part's frame went, its
		// receiver may have counted the message, so it fails; but one
		// whose last part's frame went whole was written, as a message
		// is once written to its socket (handed to OnDropped, a hint
		// replayed would run twice).
		for _, p := range w.parts {
			switch ls := p.ls; {
			case fw.lastBytes <= p.start:
				ls.sent = p.prior
			case fw.lastBytes >= p.end && ls.sent == len(ls.payload):
				if ls.isRequest {
					sink.requestWritten(ls.id) // its connection's end fails it
				}
				sink.wrote(1, len(ls.header)+len(ls.payload), btoi(ls.isResponse))
				w.forget(q, ls, sink)
				w.begun = slices.DeleteFunc(w.begun, func(b *largeSend) bool { return b == ls })
			}
		}
		for _, ls := range w.begun {
			if !ls.begunOut && ls.beginEnd > 0 && fw.lastBytes >= ls.beginEnd {
				ls.begunOut = true
			}
		}
		clear(w.parts)
		w.reset(q, sink, err)
		return err
	}
	clear(w.parts) // no reference to a sent message stays
	for _, ls := range w.begun {
		ls.begunOut = true
	}
	done := 0
	kept = w.begun[:0]
	for _, ls := range w.begun {
		if ls.granted && ls.sent == len(ls.payload) {
			done++
			if ls.isRequest {
				sink.requestWritten(ls.id)
			}
			sink.wrote(1, len(ls.header)+len(ls.payload), btoi(ls.isResponse))
			w.forget(q, ls, sink)
			continue
		}
		kept = append(kept, ls)
	}
	clear(w.begun[len(kept):])
	w.begun = kept
	w.publishInFlight()
	if done == 0 && parts > 0 {
		sink.wrote(0, 0, 0) // a write of parts only
	}
	return nil
}

// withdrawal is a message withdrawn after it began: refused with its
// parts under way, or given up by its caller. A FrameLargeCancel tells the
// receiver, which discards what it has of it, that no more follow.
type withdrawal struct {
	stream uint32
	reason Reason
}

// applyInbox applies the grants and refusals the back channel delivered,
// and returns the refused messages whose parts were under way (eager). A
// grant or refusal for a stream not begun (done, or withdrawn meanwhile)
// is ignored, and so is a grant of one granted already.
func (w *largeWriter) applyInbox(q *outQueue, sink outSink) []withdrawal {
	w.mu.Lock()
	inbox := w.inbox
	w.inbox = nil
	w.mu.Unlock()
	var withdrawn []withdrawal
	for _, f := range inbox {
		i := slices.IndexFunc(w.begun, func(ls *largeSend) bool { return ls.stream == f.stream })
		if i < 0 {
			continue
		}
		ls := w.begun[i]
		if f.refused == nil {
			ls.granted = true
			continue
		}
		w.begun = slices.Delete(w.begun, i, i+1)
		reason, ok := reasonOfCode(f.refused.Code)
		if !ok {
			reason = ReasonConnectionReset
		}
		if ls.granted {
			withdrawn = append(withdrawn, withdrawal{ls.stream, reason})
		}
		w.fail(q, ls, reason, &RemoteError{Code: f.refused.Code, Message: f.refused.Message}, sink)
	}
	return withdrawn
}

// applyWithdrawals withdraws the requests whose callers gave up: one not
// begun fails at once; a begun one fails too, and is returned for a
// FrameLargeCancel, which frees the room its receiver reserved and tells
// it that no more parts follow. A withdrawal of a message the writer is
// done with applies to nothing and is forgotten, and so does one of an
// empty message begun (answerOnly).
func (w *largeWriter) applyWithdrawals(q *outQueue, sink outSink) []withdrawal {
	w.mu.Lock()
	asked := w.withdrawals
	w.withdrawals = nil
	w.mu.Unlock()
	var withdrawn []withdrawal
	for _, wr := range asked {
		is := func(ls *largeSend) bool { return ls.id == wr.id && ls.isRequest }
		if i := slices.IndexFunc(w.waiting, is); i >= 0 {
			ls := w.waiting[i]
			w.waiting = slices.Delete(w.waiting, i, i+1)
			w.fail(q, ls, wr.reason, nil, sink)
		} else if i := slices.IndexFunc(w.begun, is); i >= 0 && !w.begun[i].answerOnly() {
			ls := w.begun[i]
			w.begun = slices.Delete(w.begun, i, i+1)
			withdrawn = append(withdrawn, withdrawal{ls.stream, wr.reason})
			w.fail(q, ls, wr.reason, nil, sink)
		}
	}
	return withdrawn
}

// fail records a message's failure and forgets it.
func (w *largeWriter) fail(q *outQueue, ls *largeSend, reason Reason, err error, sink outSink) {
	m := outMsg{id: ls.id, verb: ls.verb, isRequest: ls.isRequest, isResponse: ls.isResponse, payload: ls.payload}
	sink.failed(&m, reason, err)
	w.forget(q, ls, sink)
}

// forget gives back the capacity a finished message held.
func (w *largeWriter) forget(q *outQueue, ls *largeSend, sink outSink) {
	q.finished(ls.held())
	sink.release(int64(ls.held()))
}

// pruneExpired fails waiting messages whose deadline passed.
func (w *largeWriter) pruneExpired(q *outQueue, now int64, sink outSink) {
	kept := w.waiting[:0]
	for _, ls := range w.waiting {
		if ls.expired(now) {
			w.fail(q, ls, ReasonExpired, nil, sink)
			continue
		}
		kept = append(kept, ls)
	}
	clear(w.waiting[len(kept):])
	w.waiting = kept
}

// failWaitingRequests fails the requests not yet begun (a dial failed).
func (w *largeWriter) failWaitingRequests(q *outQueue, reason Reason, err error, sink outSink) {
	kept := w.waiting[:0]
	for _, ls := range w.waiting {
		if ls.isRequest {
			w.fail(q, ls, reason, err, sink)
			continue
		}
		kept = append(kept, ls)
	}
	clear(w.waiting[len(kept):])
	w.waiting = kept
}

// reset runs when the connection breaks or closes: messages of which no
// payload byte was written wait for the next connection, in order; the
// others are lost with it, and so is an empty one whose FrameLargeBegin,
// all of it, went out (its receiver may have taken it already). A
// refusal the back channel read before the end stands: its message
// fails with the receiver's reason, which counted it dropped, and is not
// sent again.
func (w *largeWriter) reset(q *outQueue, sink outSink, err error) {
	w.applyInbox(q, sink) // the cancels it returns have no connection to go on
	var again []*largeSend
	for _, ls := range w.begun {
		if ls.sent == 0 && !(ls.begunOut && len(ls.payload) == 0) {
			ls.granted, ls.stream, ls.begunOut, ls.beginEnd = false, 0, false, 0
			again = append(again, ls)
			continue
		}
		w.fail(q, ls, ReasonConnectionReset, err, sink)
	}
	clear(w.begun)
	w.begun = w.begun[:0]
	w.waiting = append(again, w.waiting...)
	w.mu.Lock()
	w.inbox, w.shut, w.flying = nil, true, w.flying[:0]
	w.mu.Unlock()
}

// failAll fails everything in flight with reason; the caller fails what is
// still queued.
func (w *largeWriter) failAll(q *outQueue, reason Reason, err error, sink outSink) {
	for _, ls := range w.begun {
		w.fail(q, ls, reason, err, sink)
	}
	for _, ls := range w.waiting {
		w.fail(q, ls, reason, err, sink)
	}
	w.begun, w.waiting = nil, nil
	w.publishInFlight()
}

// cancelFailure is the payload of a FrameLargeCancel.
func cancelFailure(r Reason) []byte {
	return wire.AppendFailure(nil, wire.Failure{Code: reasons[r].code})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
