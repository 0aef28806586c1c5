package transport

import (
	"fmt"
	"io"

	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/wire"
)

// largeIn is a large message being received in parts.
type largeIn struct {
	header   wire.Header
	deadline int64         // on this node's monotonic clock (monoNanos); 0: none
	need     int64         // capacity it takes once granted: its buffer's size
	exact    bool          // its buffer is allocated at its length, not from bufpool
	granted  bool          // room is reserved and the sender was told
	waiter   *limit.Waiter // while it waits for room
	payload  []byte        // from bufpool, allocated at its first part
	got      int
	// parted is set once a part of it began to arrive: its sender wrote
	// some of its payload, so the sender no longer sends it again.
	parted bool
	// streamed is set when a ReaderHandler takes the message as it
	// arrives: parts go to pipe (nil once the handler stopped reading).
	// Its handler starts with the first part (started), not at the grant:
	// a message whose connection ends before any part came is sent again
	// by its sender, and would reach its handler twice.
	streamed bool
	started  bool
	reader   ReaderHandler
	pipe     *io.PipeWriter
	// fed is pipe as the handler started with it, under ic.mu, for kill:
	// pipe belongs to the reader, which may be blocked writing to it.
	fed *io.PipeWriter
}

// readLargeBegin reads the header of a large message and grants it room,
// refuses it, or queues it to be granted once room frees; the reader goes
// on reading meanwhile. The message's TTL starts when its frame arrived:
// one that waited in the socket's receive queue while the reader was held
// up starts it when the reader's marks saw it there (arrivals).
func (ic *inConn) readLargeBegin(fh wire.FrameHeader) error {
	if fh.Length > wire.MaxHeaderSize {
		return fmt.Errorf("%w: large message header of %d bytes", wire.ErrMalformed, fh.Length)
	}
	arrived := ic.arrival()
	var buf [wire.MaxHeaderSize]byte
	if err := ic.readPayload(fh, buf[:fh.Length]); err != nil {
		return err
	}
	// The grant or refusal may wait behind a response written back to a
	// slow caller, and an empty message's Inline handler runs here.
	ic.holdStarts()
	defer ic.holdEnds()
	h, n, err := wire.DecodeHeader(buf[:fh.Length], 1<<32-1)
	if err != nil {
		return cutWithin("large message header", err)
	}
	if n != int(fh.Length) {
		return fmt.Errorf("%w: large message header followed by %d bytes", wire.ErrMalformed, int(fh.Length)-n)
	}
	h.Params = append([]byte(nil), h.Params...)
	ic.mu.Lock()
	_, dup := ic.streams[fh.Stream]
	count := len(ic.streams)
	waiting := 0
	for _, o := range ic.streams {
		if !o.granted {
			waiting++
		}
	}
	ic.mu.Unlock()
	switch {
	case dup:
		return fmt.Errorf("%w: stream %d begun twice", wire.ErrMalformed, fh.Stream)
	case count >= maxInboundStreams:
		return fmt.Errorf("%w: more than %d large messages in flight", wire.ErrMalformed, maxInboundStreams)
	}
	switch {
	case h.Flags&wire.FlagResponse != 0:
		return fmt.Errorf("%w: a response from the initiator", wire.ErrMalformed)
	case h.Flags&wire.FlagCancel != 0:
		return fmt.Errorf("%w: a cancel on the large lane", wire.ErrMalformed)
	}
	if f, ok := ic.peer.refused.of(&h); ok {
		// Begun again after its refusal went unread: counted already.
		if err := ic.sendBack(wire.FrameRefuse, fh.Stream, wire.AppendFailure(nil, f)); err != nil {
			ic.backFailed(err)
			return fmt.Errorf("%w: %w", errWroteBack, err)
		}
		return nil
	}
	if h.PayloadLength > uint32(ic.t.cfg.Memory.MaxMessageSize) {
		return ic.refuse(fh.Stream, &h, ReasonTooLarge, fmt.Sprintf("%d bytes, limit %d", h.PayloadLength, ic.t.cfg.Memory.MaxMessageSize))
	}
	if h.Flags&wire.FlagExpectsResponse != 0 && ic.t.closing.Load() {
		// As beginAnswer does: Shutdown waits for the requests being
		// handled or arriving when it began, not for ones that keep
		// coming. Granted, this one's payload came for nothing, and
		// Shutdown waited for all of it.
		return ic.refuseShuttingDown(fh.Stream, &h)
	}
	m := &largeIn{header: h, deadline: h.Deadline(arrived), need: int64(bufpool.Cap(int(h.PayloadLength)))}
	if m.expired() {
		return ic.refuse(fh.Stream, &h, ReasonExpired, "")
	}
	in := ic.t.limitsIn.Load()
	if m.need+m.paramsHeld() > min(in.PerPeer, in.Node) {
		// Its pool class would not fit where the message itself does:
		// allocate it at its length instead.
		m.need, m.exact = int64(h.PayloadLength), true
	}
	if rh, ok := (*ic.t.handlers.Load())[Verb(h.Verb)].h.(readerAdapter); ok {
		// A streamed message holds one frame at a time, not its size; its
		// handler starts with its first part.
		m.streamed, m.reader = true, rh.h
		m.need = int64(bufpool.Cap(min(ic.t.maxFrame, int(h.PayloadLength))))
	}
	if h.PayloadLength == 0 {
		m.need = 0
	}
	m.need = withParams(m, ic.t.largestRoom(in))
	ic.mu.Lock()
	if h.Flags&wire.FlagExpectsResponse != 0 && ic.t.closing.Load() {
		// Shutdown began since the look above, and its refuseWaiting,
		// which takes this lock, may have looked for waiting requests.
		ic.mu.Unlock()
		return ic.refuseShuttingDown(fh.Stream, &h)
	}
	ic.streams[fh.Stream] = m
	ic.mu.Unlock()
	if largeBeginRecorded != nil {
		largeBeginRecorded()
	}
	if ic.t.cfg.Memory.InboundOverload == OverloadReject || waiting >= maxWaitingLarge {
		// Or as many of the connection's large messages wait for room
		// as a sender begins at once: this one is refused rather than
		// kept waiting too (see maxWaitingLarge).
		if !ic.account.TryTake(m.need) {
			if !ic.forgetOwn(fh.Stream, m) {
				return nil // refused as Shutdown began (refuseWaiting)
			}
			ic.abandon(m, uncounted)
			return ic.refuse(fh.Stream, &h, ReasonOverloaded, "")
		}
		return ic.granted(fh.Stream, m)
	}
	w, ok := ic.account.WaitFunc(m.need, func(ok bool) { ic.grantLater(fh.Stream, m, ok) })
	switch {
	case w == nil && ok:
		return ic.granted(fh.Stream, m)
	case w == nil:
		if ic.waitAtLength(fh.Stream, m) {
			// The limits were lowered since in was read: its size
			// class no longer fits, its length may.
			return nil
		}
		if !ic.forgetOwn(fh.Stream, m) {
			return nil // refused as Shutdown began (refuseWaiting)
		}
		ic.abandon(m, uncounted)
		return ic.refuse(fh.Stream, &h, ReasonOverloaded, "larger than this node's inbound limits")
	}
	if largeWaitQueued != nil {
		largeWaitQueued()
	}
	ic.counters.pause() // the connection reads on; the message waits
	ic.mu.Lock()
	if !m.granted && ic.streams[fh.Stream] != m {
		// Refused meanwhile (Shutdown began: refuseWaiting), with no
		// waiter to cancel yet: no one else cancels w. Settled
		// meanwhile, grantLater finds the message gone.
		ic.mu.Unlock()
		w.Cancel()
		return nil
	}
	// Not granted meanwhile, nor failed by lowered limits and queued again
	// (waitAtLength): that waiter is the one to cancel, not w.
	if !m.granted && m.waiter == nil {
		m.waiter = w
	}
	ic.mu.Unlock()
	return nil
}

// maxWaitingLarge is how many large messages one connection may have
// waiting for inbound room (OverloadPause) at once; one begun beyond them
// that finds no room is refused (ReasonOverloaded), as under
// OverloadReject. A waiting message holds its header, its parameter
// block (up to wire.MaxParamsSize) included, outside the limits, since
// its room is taken only once granted: a connection could otherwise keep
// maxInboundStreams (64) of them, some 280 KiB, held however full the
// limits. A sender begins no more than maxBegunLarge at once, so none of
// its messages is refused for this.
const maxWaitingLarge = maxBegunLarge

// largeBeginRecorded, nil but in tests, is called once a large message
// is in its connection's streams and before it takes room: tests hold
// that moment open.
var largeBeginRecorded func()

// largeWaitQueued, nil but in tests, is called once a large message's
// waiter is queued and before it is recorded: tests hold that moment open.
var largeWaitQueued func()

// granted tells the sender that m, on stream, has room; an empty message
// is complete at once, once its grant is written: one whose grant a
// finishing Shutdown's closed back channel kept from its sender, which
// counts it lost with the connection, stays to end with the connection,
// uncounted. A request that Shutdown refused while it was given room
// (refuseWaiting took it from streams) gives the room back instead.
func (ic *inConn) granted(stream uint32, m *largeIn) error {
	ic.mu.Lock()
	if ic.streams[stream] != m {
		ic.mu.Unlock()
		ic.account.Release(m.need)
		return nil
	}
	m.granted = true
	ic.mu.Unlock()
	written, err := ic.writeBack(wire.FrameGrant, stream, nil)
	if err != nil {
		ic.backFailed(err)
		return fmt.Errorf("%w: %w", errWroteBack, err)
	}
	if m.header.PayloadLength == 0 && written {
		return ic.largeDone(stream, m)
	}
	return nil
}

// grantLater is called by the budget once room for m was granted (or
// found impossible), on the goroutine that freed it: a handler's, or
// another connection's reader, perhaps another peer's. That goroutine must
// not wait for this connection's back channel, which a peer that stops
// reading fills, so the grant or refusal is queued, in the order decided,
// for a goroutine that runs while there are some to write.
func (ic *inConn) grantLater(stream uint32, m *largeIn, ok bool) {
	if !ok && ic.waitAtLength(stream, m) {
		return
	}
	ic.mu.Lock()
	if ic.closed || ic.streams[stream] != m {
		// Withdrawn or the connection ended while it waited.
		ic.mu.Unlock()
		if ok {
			ic.account.Release(m.need)
		}
		return
	}
	m.waiter = nil
	if ok {
		m.granted = true
	} else {
		delete(ic.streams, stream)
	}
	ic.later = append(ic.later, laterAnswer{stream: stream, m: m, granted: ok})
	start := !ic.writing
	ic.writing = true
	ic.mu.Unlock()
	if !ok {
		ic.abandon(m, uncounted)
	}
	if start {
		ic.t.wg.Go(ic.answerLater)
	}
}

// waitAtLength waits again for room for m at its length, not its buffer
// pool's size class, when the limits were lowered (SetLimits) while it
// waited, or since its room was reckoned as it began, so that the class
// no longer fits and the length does, as it would be had it begun after
// the change; it reports whether it did.
func (ic *inConn) waitAtLength(stream uint32, m *largeIn) bool {
	in := ic.t.limitsIn.Load()
	ic.mu.Lock()
	if ic.closed || ic.streams[stream] != m || m.exact || m.streamed || int64(m.header.PayloadLength) > min(in.PerPeer, in.Node) {
		ic.mu.Unlock()
		return false
	}
	m.need, m.exact = int64(m.header.PayloadLength), true
	m.need = withParams(m, ic.t.largestRoom(in))
	ic.mu.Unlock()
	w, ok := ic.account.WaitFunc(m.need, func(ok bool) { ic.grantLater(stream, m, ok) })
	switch {
	case w == nil && ok:
		ic.grantLater(stream, m, true)
		return true
	case w == nil:
		return false // refused as any that cannot fit
	}
	if largeWaitQueued != nil {
		largeWaitQueued()
	}
	ic.mu.Lock()
	if !m.granted && (ic.closed || ic.streams[stream] != m) {
		// Withdrawn or the connection ended meanwhile, with the waiter
		// before this one: no one else cancels this one. Settled
		// meanwhile, grantLater finds the message gone.
		ic.mu.Unlock()
		w.Cancel()
		return true
	}
	if !m.granted {
		m.waiter = w
	}
	ic.mu.Unlock()
	return true
}

// laterAnswer is a grant or refusal decided after its message waited.
type laterAnswer struct {
	stream  uint32
	m       *largeIn
	granted bool
	closing bool // refused as Shutdown began (refuseWaiting)
}

// answerLater writes the queued grants and refusals, then exits. An
// Inline handler of an empty message it hands over that ends its
// goroutine (runtime.Goexit) ends this one: another takes over.
func (ic *inConn) answerLater() {
	returned := false
	defer func() {
		if !returned {
			ic.t.wg.Go(ic.answerLater)
		}
	}()
	for {
		ic.mu.Lock()
		if len(ic.later) == 0 {
			ic.writing = false
			ic.mu.Unlock()
			returned = true
			return
		}
		a := ic.later[0]
		ic.later[0] = laterAnswer{}
		ic.later = ic.later[1:]
		ic.mu.Unlock()
		if a.closing {
			_ = ic.refuseShuttingDown(a.stream, &a.m.header) // ends the connection if it fails
			continue
		}
		if !a.granted {
			_ = ic.refuse(a.stream, &a.m.header, ReasonOverloaded, "larger than this node's inbound limits") // ends the connection if it fails
			continue
		}
		if a.m.header.PayloadLength > 0 {
			if err := ic.sendBack(wire.FrameGrant, a.stream, nil); err != nil {
				ic.backFailed(err)
			}
			continue
		}
		// Nothing follows an empty message: the reader would never see it
		// complete. It is taken as its grant is written, as one granted at
		// once is (granted), and its sender then counts it sent and does
		// not send it again (answerOnly): it is taken from streams first,
		// or the connection's end, if it came between, would give it up
		// uncounted (abandon) and it would be lost.
		ic.mu.Lock()
		taken := ic.streams[a.stream] == a.m
		if taken {
			delete(ic.streams, a.stream)
		}
		ic.mu.Unlock()
		if !taken {
			continue // its connection ended meanwhile: its sender counts it
		}
		if written, err := ic.writeBack(wire.FrameGrant, a.stream, nil); err != nil || !written {
			// Its sender never saw the grant (the write failed, or a
			// finishing Shutdown closed the back channel): not delivered,
			// as one granted at once is not; its sender counts it lost
			// with the connection. It holds the room of its parameters
			// alone.
			if err != nil {
				ic.backFailed(err)
			}
			ic.account.Release(a.m.need)
			continue
		}
		ic.deliverLarge(a.m, false)
	}
}

// startStreamed starts the handler of streamed message m, at its first
// part (or, if it is empty, once it is complete). A connection killed
// before the pipe was recorded had its pipes ended without this one
// (kill): it is ended here, or the reader would hand it a part its
// handler may not read, and stay blocked.
func (ic *inConn) startStreamed(m *largeIn) {
	pipe := ic.streamLarge(m.reader, m)
	if streamedStarting != nil {
		streamedStarting()
	}
	ic.mu.Lock()
	m.pipe, m.fed, m.started = pipe, pipe, true
	killed := false
	select {
	case <-ic.done: // closed before kill looks for pipes: it missed this one, or ends it too
		killed = true
	default:
	}
	ic.mu.Unlock()
	if killed && pipe != nil {
		pipe.CloseWithError(ErrConnectionReset) // its handler reads the error
	}
}

// streamedStarting, nil but in tests, is called once a streamed message's
// handler is started and before its pipe is recorded: tests hold that
// moment open.
var streamedStarting func()

// refuse tells the sender it will not get room for the message of header
// h, begun on stream, and counts it once the refusal is written. One that
// could not be written is not counted: the connection ends, and its
// sender, which never saw the refusal, sends the message again on its
// next connection (or counts it lost, an empty one), where it ends in its
// one outcome. Counted before the write and taken back after a failed
// one, the count could be seen to go down, a reset to a monotonic
// counter. One written is remembered (largeRefusals): the connection may
// end before its sender reads it.
func (ic *inConn) refuse(stream uint32, h *wire.Header, reason Reason, detail string) error {
	return ic.refuseWith(stream, h, reason, wire.Failure{Code: reasons[reason].code, Message: detail})
}

// refuseShuttingDown refuses the large request of header h on stream,
// begun after Shutdown began, as beginAnswer answers a small one:
// ErrOverloaded ("the node is shutting down") to its caller, counted as
// ReasonClosed.
func (ic *inConn) refuseShuttingDown(stream uint32, h *wire.Header) error {
	return ic.refuseWith(stream, h, ReasonClosed, wire.Failure{Code: failureCode(errShuttingDown), Message: errShuttingDown.Error()})
}

// refuseWith writes refusal f of the message of header h, counts it as
// reason and remembers it. One not written because a finishing Shutdown
// has closed the back channel (closeBack) is not counted either: its
// sender, which reads the end and not the refusal, counts the message or
// sends it again, as refuse says of one whose write failed.
func (ic *inConn) refuseWith(stream uint32, h *wire.Header, reason Reason, f wire.Failure) error {
	written, err := ic.writeBack(wire.FrameRefuse, stream, wire.AppendFailure(nil, f))
	if err != nil {
		ic.backFailed(err)
		return fmt.Errorf("%w: %w", errWroteBack, err)
	}
	if !written {
		return nil
	}
	ic.peer.refused.add(h, f)
	ic.counters.drop(reason)
	return nil
}

// refuseWaiting refuses, "shutting down", the large requests still
// waiting for room as Shutdown begins. Shutdown waits for the requests
// being handled or granted room, not for these, whose room may never come
// before it ends: it would close the connection under them, and their
// callers would read a reset, not an answer. The refusals are written by
// answerLater, which Shutdown waits for (requestArriving).
func (ic *inConn) refuseWaiting() {
	var refused []*largeIn
	ic.mu.Lock()
	if ic.closed {
		ic.mu.Unlock()
		return
	}
	for stream, m := range ic.streams {
		if m.granted || m.header.Flags&wire.FlagExpectsResponse == 0 {
			continue
		}
		delete(ic.streams, stream)
		ic.later = append(ic.later, laterAnswer{stream: stream, m: m, closing: true})
		refused = append(refused, m)
	}
	start := len(refused) > 0 && !ic.writing
	if start {
		ic.writing = true
	}
	ic.mu.Unlock()
	for _, m := range refused {
		ic.abandon(m, uncounted) // counted as its refusal is written
	}
	if start {
		ic.t.wg.Go(ic.answerLater)
	}
}

// forgetOwn removes stream's entry if it is still m's, and reports
// whether it did: refuseWaiting may have taken it, and refused m, since m
// began.
func (ic *inConn) forgetOwn(stream uint32, m *largeIn) bool {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.streams[stream] != m {
		return false
	}
	delete(ic.streams, stream)
	return true
}

// forget removes stream's entry.
func (ic *inConn) forget(stream uint32) {
	ic.mu.Lock()
	delete(ic.streams, stream)
	ic.mu.Unlock()
}

// uncounted is abandon's reason for a message counted elsewhere, or not
// at all: not a Reason (0 is ReasonOverloaded, a reason like any other).
const uncounted = NumReasons

// abandon gives back what an unfinished large message holds; a reason
// other than uncounted counts it as dropped with that reason, unless it is
// streamed and its handler started (it was received then, and its handler
// reads the error instead) or its connection ended before any part of it
// came (its sender counts it, or sends it again).
func (ic *inConn) abandon(m *largeIn, reason Reason) {
	ic.mu.Lock()
	granted, started, w := m.granted, m.started, m.waiter
	m.waiter = nil
	ic.mu.Unlock()
	switch {
	case started:
		reason = uncounted // received when its handler took it; the handler reads the error
	case (reason == ReasonConnectionReset || reason == ReasonClosed) && !m.parted:
		// Its connection ended before any part of it came: it is its
		// sender's to count. A sender that wrote none of its payload sends
		// it again on its next connection (a message waiting for its grant
		// never has); one that did counts it lost. Counted here too, it
		// would end twice: dropped here, delivered later.
		reason = uncounted
	}
	if w != nil && !w.Cancel() {
		// Settled meanwhile: grantLater finds the message gone and gives
		// back what it was granted.
		granted = false
	}
	if m.pipe != nil {
		m.pipe.CloseWithError(ErrConnectionReset) // its handler reads the error
		m.pipe = nil
	}
	// Counted before the capacity goes back: one that waits for the
	// capacity (a test, Stats) then sees the outcome.
	if reason != uncounted {
		ic.counters.drop(reason)
	}
	if granted {
		ic.account.Release(m.need)
	}
	m.putPayload()
}

func (ic *inConn) readLargeMore(fh wire.FrameHeader) error {
	ic.mu.Lock()
	m := ic.streams[fh.Stream]
	granted := m != nil && m.granted
	ic.mu.Unlock()
	switch {
	case m == nil:
		return fmt.Errorf("%w: part of unknown stream %d", wire.ErrMalformed, fh.Stream)
	case !granted:
		return fmt.Errorf("%w: part of stream %d before it was granted", wire.ErrMalformed, fh.Stream)
	case m.got+int(fh.Length) > int(m.header.PayloadLength):
		return fmt.Errorf("%w: large message part overruns its length", wire.ErrMalformed)
	}
	m.parted = true
	if m.streamed {
		buf := bufpool.Get(int(fh.Length))
		err := ic.readPayload(fh, buf)
		if err == nil && !m.started {
			ic.startStreamed(m)
		}
		if err == nil {
			ic.holdStarts() // while its handler reads the part
			m.feed(buf)
			ic.holdEnds()
		}
		bufpool.Put(buf)
		if err != nil {
			return err
		}
	} else {
		if m.payload == nil {
			m.getPayload()
		}
		if err := ic.readPayload(fh, m.payload[m.got:m.got+int(fh.Length)]); err != nil {
			return err
		}
	}
	m.got += int(fh.Length)
	ic.measureRecvQueue(int(fh.Length), false)
	if m.got < int(m.header.PayloadLength) {
		return nil
	}
	ic.holdStarts() // an Inline handler runs here
	defer ic.holdEnds()
	return ic.largeDone(fh.Stream, m)
}

// largeDone delivers a large message whose last byte is in. A request is
// counted as being answered from before it leaves streams, where Shutdown
// sees it arriving (requestArriving), until it is handed on, counted
// there: Shutdown must not find it in neither.
func (ic *inConn) largeDone(stream uint32, m *largeIn) error {
	isRequest := m.header.Flags&wire.FlagExpectsResponse != 0
	if isRequest {
		ic.answering.Add(1)
		defer ic.answered() // deferred: an Inline handler may end the reader's goroutine (reading)
	}
	ic.forget(stream)
	ic.deliverLarge(m, true)
	return nil
}

// requestArriving reports whether a large request was granted room and
// has not all arrived, or grants and refusals are still to be written
// (answerLater): Shutdown waits for them as for a request being handled,
// or it would close the connection under them, their callers reading a
// reset, not an answer.
func (ic *inConn) requestArriving() bool {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.writing {
		return true
	}
	for _, m := range ic.streams {
		if m.granted && m.header.Flags&wire.FlagExpectsResponse != 0 {
			return true
		}
	}
	return false
}

// deliverLarge hands a complete large message on: to its streaming
// handler (end of body), or its verb's stage or ordered queue (handOver);
// onReader says the connection's reader calls it.
func (ic *inConn) deliverLarge(m *largeIn, onReader bool) {
	if m.streamed {
		if !m.started { // empty: no part came to start it
			ic.startStreamed(m)
		}
		if m.pipe != nil {
			m.pipe.Close() // the handler reads io.EOF
		}
		ic.account.Release(m.need)
		return
	}
	if m.expired() {
		ic.counters.drop(ReasonExpired) // counted first, as in abandon
		ic.account.Release(m.need)
		m.putPayload()
		return
	}
	f := framePool.Get().(*inFrame)
	f.buf, f.pooled, f.large, f.held, f.deadline = m.payload, !m.exact, &m.header, m.need, m.deadline
	ic.handOver(f, onReader)
}

// paramsHeld is the room m's parameter block takes: copied out of its
// FrameLargeBegin, it is held with m until its handler is done, and it
// may be 32 times the room of an empty or tiny payload (wire.MaxParamsSize
// against a pool class of 1 KiB, or none). Not counted, a peer's large
// messages waiting for a busy handler held many times the inbound limits.
func (m *largeIn) paramsHeld() int64 { return int64(len(m.header.Params)) }

// withParams is the room m takes with its parameter block, m.need being
// its payload's: at most room, the largest room a message may need under
// the limits (largestRoom), which validated limits keep at or above
// MaxMessageSize and open stream connections leave free, so a message of
// that size with parameters still fits, beside them too. Of a message
// whose payload's room is within a parameter block of that room, up to
// wire.MaxParamsSize (4 KiB) of its parameters go uncounted.
func withParams(m *largeIn, room int64) int64 {
	return min(m.need+m.paramsHeld(), room)
}

// expired reports whether m's deadline has passed.
func (m *largeIn) expired() bool { return m.deadline != 0 && monoNanos() >= m.deadline }

// getPayload allocates m's buffer, at its first part.
func (m *largeIn) getPayload() {
	if m.exact {
		m.payload = make([]byte, m.header.PayloadLength)
		return
	}
	m.payload = bufpool.Get(int(m.header.PayloadLength)) // every byte is overwritten before use
}

// putPayload recycles m's buffer, if it has one.
func (m *largeIn) putPayload() {
	if m.payload != nil && !m.exact {
		bufpool.Put(m.payload)
	}
	m.payload = nil
}

// grant hands the response writer the requester's grant or refusal of a
// large response; false: the requester sends more than it was asked
// for. Without a writer no response was begun, and it is for none: a
// late one is ignored, as the writer ignores it (largeWriter.deliver).
func (ic *inConn) grant(f backFrame) bool {
	w := ic.replies.Load()
	return w == nil || w.grant(f)
}

// readRefusal reads the requester's refusal of a large response.
func (ic *inConn) readRefusal(fh wire.FrameHeader) error {
	f, err := ic.readFailure(fh)
	if err != nil {
		return err
	}
	if !ic.grant(backFrame{stream: fh.Stream, refused: &f}) {
		return errTooManyGrants
	}
	return nil
}

// errTooManyGrants: a peer sends grants or refusals for far more large
// messages than were begun.
var errTooManyGrants = fmt.Errorf("%w: grants or refusals for more large messages than were begun", wire.ErrMalformed)

// readFailure reads a frame whose payload is a Failure.
func (ic *inConn) readFailure(fh wire.FrameHeader) (wire.Failure, error) {
	return readFailureFrame(fh, ic.readPayload)
}

// readLargeCancel withdraws a large message its sender gave up on.
func (ic *inConn) readLargeCancel(fh wire.FrameHeader) error {
	f, err := ic.readFailure(fh)
	if err != nil {
		return err
	}
	ic.mu.Lock()
	m := ic.streams[fh.Stream]
	delete(ic.streams, fh.Stream)
	ic.mu.Unlock()
	if m == nil {
		return nil // refused meanwhile: the sender had not seen it yet
	}
	reason, ok := reasonOfCode(f.Code)
	if !ok {
		reason = ReasonCanceled
	}
	if m.streamed && m.pipe != nil {
		m.pipe.CloseWithError(fmt.Errorf("transport: the sender withdrew the message: %w", reason.Err()))
		m.pipe = nil
	}
	ic.abandon(m, reason)
	return nil
}
