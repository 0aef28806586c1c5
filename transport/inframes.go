package transport

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// inFrame is what a connection's messages are read into: one batch frame,
// or one whole large message. It holds its capacity until the last of its
// messages is done (refs).
type inFrame struct {
	buf    []byte // the frame, or the large message's payload; owned until release
	pooled bool   // buf came from bufpool and goes back there
	large  *wire.Header
	// arrived is when a batch frame was read, and deadline a large
	// message's; each on this node's monotonic clock (monoNanos), which a
	// step of its wall clock does not move. A message's deadline
	// is its arrival plus its TTL (wire.Header.Deadline).
	arrived, deadline int64
	held              int64 // inbound capacity held until every handler returned
	over              bool  // taken beyond the limits (takeUrgentOverdraft) until it is released
	// refs counts the frame's messages not yet done, and the reader's
	// hold while it routes them; the last gives the frame back.
	refs atomic.Int32
}

var framePool = sync.Pool{New: func() any { return new(inFrame) }}

// read decodes frames until the connection ends or carries bad input.
func (ic *inConn) read() error {
	var hdr [wire.FrameHeaderSize]byte
	for {
		// One deadline bounds the silence before a frame, another, set
		// as its first byte arrives, the frame itself, header and
		// payload (readPayload): not the two together.
		if err := ic.awaitFrame(ic.renewReadDeadline()); err != nil {
			return err
		}
		ic.frameStart = ic.renewReadDeadline()
		ic.frameAt = ic.arrivals.read - int64(ic.src.Buffered())
		if _, err := io.ReadFull(frameSource{ic}, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("frame header: %w", wire.ErrTruncated)
			}
			return err
		}
		fh, err := wire.ParseFrameHeader(hdr[:], uint32(ic.t.maxFrame))
		if err != nil {
			return err
		}
		if !ic.allowed(fh.Kind) {
			return fmt.Errorf("%w: %v frame on the %s lane", wire.ErrMalformed, fh.Kind, ic.lane)
		}
		if fh.Kind.Empty() {
			// Its checksum covers its header alone, and no payload read
			// (readPayload) checks it: a ping, or a grant whose stream
			// number a flipped bit made another, is checked here.
			if err := fh.Verify(nil); err != nil {
				return err
			}
		}
		switch fh.Kind {
		case wire.FrameBatch:
			err = ic.readBatch(fh)
		case wire.FrameBatchS2:
			err = ic.readBatchS2(fh)
		case wire.FrameLargeBegin:
			err = ic.readLargeBegin(fh)
		case wire.FrameLargeMore:
			err = ic.readLargeMore(fh)
			ic.t.waker.yieldAfterPart()
		case wire.FrameLargeCancel:
			err = ic.readLargeCancel(fh)
		case wire.FrameGrant:
			if !ic.grant(backFrame{stream: fh.Stream}) {
				err = errTooManyGrants
			}
		case wire.FrameRefuse:
			err = ic.readRefusal(fh)
		case wire.FramePing:
		}
		if err != nil {
			return err
		}
	}
}

// allowed reports whether the initiator of this lane may send kind: its
// messages (batches on the urgent and small lanes, compressed ones only
// if the handshake agreed wire.CapBatchS2, large ones in parts on the
// large lane), pings, and the grants and refusals of this node's
// large responses, on any lane.
func (ic *inConn) allowed(kind wire.FrameKind) bool {
	switch kind {
	case wire.FramePing, wire.FrameGrant, wire.FrameRefuse:
		return true
	case wire.FrameBatch:
		return ic.lane != routing.Large
	case wire.FrameBatchS2:
		return ic.lane != routing.Large && ic.caps&wire.CapBatchS2 != 0
	case wire.FrameLargeBegin, wire.FrameLargeMore, wire.FrameLargeCancel:
		return ic.lane == routing.Large
	}
	return false
}

// readPayload reads and verifies a frame's payload into dst.
// The deadline set as the frame's first byte arrived bounds it (Keepalive
// bounds one frame), unless reading paused for capacity since (admit).
func (ic *inConn) readPayload(fh wire.FrameHeader, dst []byte) error {
	if ic.lastRenew.IsZero() {
		ic.frameStart = ic.renewReadDeadline()
	}
	return readFramePayload(frameSource{ic}, fh, dst)
}

// readFramePayload reads and verifies the payload of the frame fh heads
// from r into dst.
func readFramePayload(r io.Reader, fh wire.FrameHeader, dst []byte) error {
	if _, err := io.ReadFull(r, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("frame payload: %w", wire.ErrTruncated)
		}
		return err
	}
	return fh.Verify(dst)
}

// readFailureFrame reads the payload of a frame that carries a Failure
// with read (a connection's readPayload).
func readFailureFrame(fh wire.FrameHeader, read func(wire.FrameHeader, []byte) error) (wire.Failure, error) {
	var buf [wire.MaxFailureMessage + 16]byte
	if fh.Length > uint32(len(buf)) {
		return wire.Failure{}, fmt.Errorf("%w: failure of %d bytes", wire.ErrMalformed, fh.Length)
	}
	if err := read(fh, buf[:fh.Length]); err != nil {
		return wire.Failure{}, err
	}
	f, err := wire.DecodeFailure(buf[:fh.Length])
	return f, cutWithin("failure", err)
}

// cutWithin wraps what a decoder found cut short (wire.ErrTruncated) in
// bytes that all arrived — a frame's payload, whose length its header
// gave, or a file header its header_len bounds — as malformed: the bytes
// are not the wire format, and the connection is counted as
// BadInputMalformed, not as a frame cut short by the connection's end
// (BadInputTruncated). Any other error is returned as it is.
func cutWithin(what string, err error) error {
	if errors.Is(err, wire.ErrTruncated) {
		return fmt.Errorf("%w: %s cut short: %w", wire.ErrMalformed, what, err)
	}
	return err
}

// readBatch reads a batch frame and hands its messages on (readAdmitted).
func (ic *inConn) readBatch(fh wire.FrameHeader) error {
	return ic.readAdmitted(int(fh.Length), func(buf []byte) error {
		if err := ic.readPayload(fh, buf); err != nil {
			return err
		}
		ic.measureRecvQueue(int(fh.Length), false)
		return nil
	}, func(arrived int64) error {
		return ic.rejectBatch(fh, arrived)
	})
}

// readAdmitted reads a batch frame of n bytes with read, into a pooled
// buffer, once capacity for the buffer is taken, and hands its messages
// on. Out of capacity, OverloadPause waits (reading stops, so TCP pushes
// back on the sender) and OverloadReject has reject read the frame and
// reject its messages, with no capacity taken: a plain frame is read
// without being held (rejectBatch), a compressed one as readBatchS2 says.
//
// A small frame (maxUnadmittedFrame) that does not fit at once is read
// first: one that holds only cancels needs no capacity, and must not wait
// for the capacity held by the very handlers it would stop. Any other on
// the urgent lane may be taken beyond the limits (takeUrgentOverdraft),
// so that neither it nor the cancels behind it wait for the room a peer's
// requests hold; under OverloadReject too, so that it is not refused.
// Elsewhere, or past that bound, its cancels act before it waits for its
// capacity, holding its bytes meanwhile (one such frame a connection). A sender's writer puts cancels
// in frames of their own within this size, ahead of its other frames
// (frameWriter.writeBatch).
//
// Its messages' TTLs start as its header has been read, whichever way it
// waits: a request held here past its deadline, its payload unread or
// read, has been given up by its caller, who sends no cancel for that,
// and must not run once the room comes, nor answer with a deadline that
// the wait has pushed back. A frame that waited in the socket's receive
// queue while an earlier one waited here starts them when the reader's
// marks saw it there (arrivals).
func (ic *inConn) readAdmitted(n int, read func(buf []byte) error, reject func(arrived int64) error) error {
	arrived := ic.arrival()
	held := int64(bufpool.Cap(n))
	took := ic.account.TryTake(held)
	// Once the back channel is closed (finishInbound) a refusal reaches
	// no one, and the frame waits for its room instead (roomWaitStop).
	pause := ic.t.cfg.Memory.InboundOverload == OverloadPause || ic.backClosed.Load()
	if !took && pause {
		// Set before it waits, cleared once its messages are handed on
		// or answered: Shutdown waits for it (inboundAnswered), and its
		// wait ends as Shutdown begins (waitRoom).
		ic.waitingRoom.Store(true)
		defer ic.waitingRoom.Store(false)
	}
	if !took && n <= maxUnadmittedFrame && pause {
		buf := bufpool.Get(n)
		if err := read(buf); err != nil {
			bufpool.Put(buf)
			return err
		}
		if ic.needsNoRoom(buf) {
			return ic.handleBatch(buf, 0, arrived, false, false, false)
		}
		var freed <-chan struct{}
		var tryOver func() bool
		if ic.lane == routing.Urgent {
			freed = ic.t.urgentOverdraftFreedChan() // before it tries: a release after wakes it
			if ic.t.takeUrgentOverdraft(ic.peer) {
				// The urgent lane's control traffic (a heartbeat, gossip)
				// is not held up by the room a peer's requests hold, nor
				// are the cancels behind it, which a reader waiting here
				// would not read: the frame is taken beyond the limits,
				// one at a time a peer (not a connection, which the frame
				// may outlive) and maxUrgentOverdrafts node-wide.
				ic.account.Overdraw(held)
				return ic.handleBatch(buf, held, arrived, false, false, true)
			}
			tryOver = func() bool { return ic.t.takeUrgentOverdraft(ic.peer) }
		}
		// Its cancels act before it waits: the room it waits for may be
		// held by the very handlers they stop.
		ic.actOnCancels(buf)
		// On the urgent lane it waits for room or for the allowance, given
		// back, whichever it gets first.
		over, err := ic.waitRoom(ic.account, held, freed, tryOver, ic.roomWaitStop())
		if err == errShutdownBegan {
			// Its requests are answered "shutting down", its other
			// messages refused likewise (refuseMessage), with no room.
			return ic.handleBatch(buf, 0, arrived, true, true, false)
		}
		if err != nil {
			// Its messages arrived, its cancels were counted: the rest end
			// with the connection, counted.
			ic.dropUnrouted(buf)
			bufpool.Put(buf)
			return err
		}
		if over {
			ic.account.Overdraw(held)
		}
		return ic.handleBatch(buf, held, arrived, false, true, over)
	}
	if !took && n <= maxUnadmittedFrame && ic.lane == routing.Urgent && ic.t.takeUrgentOverdraft(ic.peer) {
		// OverloadReject: the urgent lane's control traffic is taken
		// beyond the limits as under OverloadPause, not refused as one
		// more of the requests that hold the room.
		buf := bufpool.Get(n)
		if err := read(buf); err != nil {
			bufpool.Put(buf)
			ic.t.giveBackUrgentOverdraft(ic.peer)
			return err
		}
		ic.account.Overdraw(held)
		return ic.handleBatch(buf, held, arrived, false, false, true)
	}
	if !took {
		rejecting, err := ic.admit(held)
		if err != nil {
			return err
		}
		if rejecting {
			return reject(arrived)
		}
	}
	buf := bufpool.Get(n)
	if err := read(buf); err != nil {
		bufpool.Put(buf)
		ic.account.Release(held)
		return err
	}
	return ic.handleBatch(buf, held, arrived, false, false, false)
}

// rejectScratch is the length of the buffer a batch frame read only to
// be rejected is read through (rejectBatch): room for the longest
// message header, wire.MaxHeaderSize, with the bytes around it.
const rejectScratch = 8 << 10

// rejectedMessage is what answering one message of a rejected batch frame
// takes, kept while the rest of the frame is read (rejectBatch).
type rejectedMessage struct {
	id       uint64
	deadline int64 // on this node's monotonic clock (monoNanos); 0: none
	verb     uint32
	length   uint32 // of its payload
	flags    wire.MessageFlags
}

// rejectBatch reads a batch frame that OverloadReject rejects, whose
// header fh arrived at arrived (monoNanos), and answers its messages as
// handleBatch answers a rejected frame's: its cancels act, each message
// above MaxMessageSize is refused as too large and each other one as
// overloaded. It does not hold the frame: it reads it through a buffer
// of rejectScratch bytes and keeps of each message only what its answer
// takes (rejectedMessage, 32 bytes), so a peer that trickles such frames
// holds that much of this node a connection, not a frame's length.
//
// Nothing is acted on before the whole frame has been read and its
// checksum matched, as for a frame read whole: a frame with a bad
// message is read to its end all the same, and then refused whole as
// malformed, or as damaged (wire.ErrChecksum) when its checksum does not
// match, which a frame's checksum says first however bad its messages.
func (ic *inConn) rejectBatch(fh wire.FrameHeader, arrived int64) error {
	if ic.lastRenew.IsZero() {
		ic.frameStart = ic.renewReadDeadline()
	}
	buf := bufpool.Get(rejectScratch)
	defer bufpool.Put(buf)
	crc := fh.HeaderChecksum()
	left := int(fh.Length) // of the frame, not yet read
	lo, hi := 0, 0         // buf[lo:hi] read and not yet decoded
	// more reads what of the frame fits after buf[lo:hi], moved to the
	// start of buf, at least one byte; left must not be 0.
	more := func() error {
		hi = copy(buf, buf[lo:hi])
		lo = 0
		n, err := io.ReadAtLeast(frameSource{ic}, buf[hi:hi+min(len(buf)-hi, left)], 1)
		crc = crc32.Update(crc, castagnoli, buf[hi:hi+n])
		hi += n
		left -= n
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("frame payload: %w", wire.ErrTruncated)
		}
		return err
	}
	var msgs []rejectedMessage
	var bad error
	h := &ic.header
	for count := 0; bad == nil && (left > 0 || lo < hi); {
		n, err := h.Decode(buf[lo:hi], uint32(ic.t.maxFrame))
		if errors.Is(err, wire.ErrTruncated) && left > 0 {
			if err := more(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			bad = err
			if errors.Is(err, wire.ErrTruncated) {
				bad = fmt.Errorf("%w: message header overruns its frame: %w", wire.ErrMalformed, err)
			}
			break
		}
		lo += n
		count++
		switch {
		case count > wire.MaxBatchMessages:
			bad = fmt.Errorf("%w: more than %d messages in a frame", wire.ErrMalformed, wire.MaxBatchMessages)
		case h.Flags&wire.FlagResponse != 0:
			bad = fmt.Errorf("%w: a response from the initiator", wire.ErrMalformed)
		default:
			msgs = append(msgs, rejectedMessage{id: h.ID, deadline: h.Deadline(arrived), verb: h.Verb, length: h.PayloadLength, flags: h.Flags})
		}
		// Its payload is passed over.
		for skip := int(h.PayloadLength); bad == nil && skip > 0; {
			if lo == hi {
				if left == 0 {
					bad = fmt.Errorf("%w: message overruns its frame", wire.ErrMalformed)
					break
				}
				if err := more(); err != nil {
					return err
				}
			}
			step := min(skip, hi-lo)
			lo += step
			skip -= step
		}
	}
	if fh.Length == 0 {
		bad = fmt.Errorf("%w: empty batch", wire.ErrMalformed)
	}
	// A bad frame is read to its end: its checksum says first whether it
	// was damaged on its way.
	for left > 0 {
		lo, hi = 0, 0
		if err := more(); err != nil {
			return err
		}
	}
	if crc != fh.Checksum {
		return wire.ErrChecksum
	}
	if bad != nil {
		return bad
	}
	ic.measureRecvQueue(int(fh.Length), false)
	for _, m := range msgs {
		req := wire.Header{Flags: m.flags, ID: m.id, Verb: m.verb, PayloadLength: m.length}
		if m.flags&wire.FlagCancel != 0 {
			ic.counters.receive(0)
			ic.peer.cancels.cancel(m.id)
			continue
		}
		ic.refuseMessage(&req, m.deadline)
	}
	return nil
}

// refuseMessage counts and answers a message of a batch frame that is not
// routed: one above MaxMessageSize as too large (only a request is
// answered) — a peer whose MaxMessageSize is larger, in a rolling change
// of it, sent it: refused, as a large one is, not bad input — and any
// other, its frame rejected for want of room, as overloaded: once
// Shutdown has begun, "shutting down" (ErrOverloaded), counted as
// ReasonClosed.
func (ic *inConn) refuseMessage(h *wire.Header, deadline int64) {
	if tooLarge(h, ic.t.cfg.Memory.MaxMessageSize) {
		ic.counters.drop(ReasonTooLarge)
		if h.Flags&wire.FlagExpectsResponse != 0 {
			ic.t.respond(ic, h, deadline, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, h.PayloadLength, ic.t.cfg.Memory.MaxMessageSize))
		}
		return
	}
	if ic.t.closing.Load() {
		// As beginAnswer answers a request once Shutdown has begun.
		ic.counters.drop(ReasonClosed)
		ic.t.respond(ic, h, deadline, nil, errShuttingDown)
		return
	}
	ic.counters.drop(ReasonOverloaded)
	ic.t.respond(ic, h, deadline, nil, ErrOverloaded)
}

// maxUrgentOverdrafts bounds the small urgent frames held beyond the
// limits node-wide (readAdmitted): one a peer, and no more than these
// (64 KiB) however many peers, or made-up IDs, there are.
const maxUrgentOverdrafts = 16

// takeUrgentOverdraft reports whether a small urgent frame of p's may be
// taken beyond the limits: none of p's is held so, and fewer than
// maxUrgentOverdrafts are node-wide. The frame's release gives it back
// (releaseFrame), whether or not its connection has ended since.
func (t *Transport) takeUrgentOverdraft(p *peer) bool {
	if !p.urgentOver.CompareAndSwap(false, true) {
		return false
	}
	if t.urgentOverdrafts.Add(1) > maxUrgentOverdrafts {
		t.urgentOverdrafts.Add(-1)
		p.urgentOver.Store(false)
		return false
	}
	return true
}

// urgentOverdraftFreedChan returns the channel closed when a small urgent
// frame taken beyond the limits is next given back (releaseFrame).
func (t *Transport) urgentOverdraftFreedChan() <-chan struct{} {
	for {
		if ch := t.urgentOverdraftFreed.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		t.urgentOverdraftFreed.CompareAndSwap(nil, &ch)
	}
}

// giveBackUrgentOverdraft gives back p's allowance of a small urgent frame
// beyond the limits, and wakes the readers that wait for room for one.
func (t *Transport) giveBackUrgentOverdraft(p *peer) {
	t.urgentOverdrafts.Add(-1)
	p.urgentOver.Store(false)
	ch := make(chan struct{})
	if old := t.urgentOverdraftFreed.Swap(&ch); old != nil {
		close(*old)
	}
}

// maxUnadmittedFrame is the largest batch frame read before its capacity
// is taken (readAdmitted): room for a hundred cancels.
const maxUnadmittedFrame = 4 << 10

// needsNoRoom reports whether a batch frame needs no inbound capacity:
// it holds only cancels, or it is bad input, which handleBatch refuses.
func (ic *inConn) needsNoRoom(frame []byte) bool {
	shape, err := ic.checkBatch(frame, false)
	return err != nil || shape.cancels == shape.count
}

// actOnCancels acts on the cancels of a batch frame, well formed
// (needsNoRoom said so), read before its room was taken (readAdmitted).
func (ic *inConn) actOnCancels(frame []byte) {
	_ = forEachMessage(frame, uint32(ic.t.maxFrame), &ic.header, func(h *wire.Header, _ []byte) {
		if h.Flags&wire.FlagCancel != 0 {
			ic.counters.receive(0)
			ic.peer.cancels.cancel(h.ID)
		}
	})
}

// batchShape is what a batch frame holds, found before any of it is
// acted on (checkBatch).
type batchShape struct {
	count, cancels int
	// handled counts the messages for handlers: neither cancels nor too
	// large, and none when the frame is rejected; requests counts those
	// that expect a response, and oneVerb says whether they share verb.
	handled, requests int
	verb              uint32
	oneVerb           bool
	// latestTTL is the longest TTL of those for handlers; untimed says
	// one of them has none.
	latestTTL int64
	untimed   bool
}

// checkBatch decodes every message of a batch frame and acts on none: a
// frame with a bad one — malformed, one too many (wire.MaxBatchMessages),
// or a response, which travels back on the connection its request came
// on and never this way — is malformed as a whole (wire/doc.go), and
// nothing before the bad message may have been acted on.
func (ic *inConn) checkBatch(frame []byte, rejecting bool) (s batchShape, err error) {
	s.oneVerb = true
	var bad error
	err = forEachMessage(frame, uint32(ic.t.maxFrame), &ic.header, func(h *wire.Header, _ []byte) {
		s.count++
		switch {
		case bad != nil:
		case s.count > wire.MaxBatchMessages:
			bad = fmt.Errorf("%w: more than %d messages in a frame", wire.ErrMalformed, wire.MaxBatchMessages)
		case h.Flags&wire.FlagResponse != 0:
			bad = fmt.Errorf("%w: a response from the initiator", wire.ErrMalformed)
		case h.Flags&wire.FlagCancel != 0:
			s.cancels++
		case rejecting, tooLarge(h, ic.t.cfg.Memory.MaxMessageSize):
		default:
			if s.handled == 0 {
				s.verb = h.Verb
			}
			s.oneVerb = s.oneVerb && h.Verb == s.verb
			if h.Flags&wire.FlagExpectsResponse != 0 {
				s.requests++
			}
			s.handled++
			s.latestTTL = max(s.latestTTL, h.TTL)
			s.untimed = s.untimed || h.TTL == 0
		}
	})
	return s, cmp.Or(err, bad)
}

// dropUnrouted counts as dropped the messages, but for cancels, of a
// well-formed batch frame that was read but will never be routed: its
// connection or the transport ended while it waited for room
// (readAdmitted).
func (ic *inConn) dropUnrouted(frame []byte) {
	reason := ic.t.endReason()
	_ = forEachMessage(frame, uint32(ic.t.maxFrame), &ic.header, func(h *wire.Header, _ []byte) {
		if h.Flags&wire.FlagCancel == 0 {
			ic.counters.drop(reason)
		}
	})
}

// endReason is the reason a message cut off by its connection's end is
// dropped with: ReasonClosed once the transport has closed (Close ended
// the connection, as it ends everything else), else ReasonConnectionReset.
func (t *Transport) endReason() Reason {
	select {
	case <-t.closed:
		return ReasonClosed
	default:
		return ReasonConnectionReset
	}
}

// handleBatch routes the messages of a batch frame read into buf, a
// pooled buffer it takes over with held bytes of capacity, at arrived
// (monoNanos), where its messages' TTLs start; rejecting, it answers them
// overloaded instead. cancelsDone says its cancels have
// acted already (actOnCancels); over, that it was taken beyond the limits
// (readAdmitted, takeUrgentOverdraft) until it is released.
func (ic *inConn) handleBatch(buf []byte, held, arrived int64, rejecting, cancelsDone, over bool) error {
	defer ic.inlineHoldEnds()
	f := framePool.Get().(*inFrame)
	f.buf, f.pooled, f.held, f.arrived, f.over = buf, true, held, arrived, over
	// Check every message first: a frame with a bad one is handled not at
	// all. Then the cancels act, and those refused are answered, before
	// the rest are routed.
	shape, err := ic.checkBatch(buf, rejecting)
	if err != nil {
		ic.releaseFrame(f)
		return err
	}
	if shape.handled == shape.count && shape.oneVerb && shape.requests == 0 {
		deadline := int64(0)
		if !shape.untimed {
			deadline = (&wire.Header{TTL: shape.latestTTL}).Deadline(arrived)
		}
		if ic.queueWhole(f, shape.verb, deadline) {
			return nil
		}
	}
	if shape.handled < shape.count {
		_ = forEachMessage(buf, uint32(ic.t.maxFrame), &ic.header, func(h *wire.Header, _ []byte) {
			switch {
			case h.Flags&wire.FlagCancel != 0:
				if !cancelsDone {
					ic.counters.receive(0)
					ic.peer.cancels.cancel(h.ID)
				}
			case rejecting || tooLarge(h, ic.t.cfg.Memory.MaxMessageSize):
				ic.refuseMessage(h, h.Deadline(f.arrived))
			}
		})
	}
	if shape.handled == 0 {
		ic.releaseFrame(f)
		return nil
	}
	ic.holdWork(f, shape.handled)
	f.refs.Store(1)
	ic.routeFrame(f, 0)
	return nil
}

// routeFrame routes the messages of batch frame f after the first skip
// routed, then writes the answers of its Inline handlers and lets go of
// the reader's reference to f. An Inline handler that ends the reader's
// goroutine (runtime.Goexit) leaves the rest of the frame to the reader
// that takes over (reading).
func (ic *inConn) routeFrame(f *inFrame, skip int) {
	routed, returned := 0, false
	defer func() {
		if !returned {
			// A copy for the closure, which outlives the frame: routed
			// itself, captured, would be moved to the heap for every
			// frame.
			skip := routed
			ic.resume = func() {
				defer ic.inlineHoldEnds()
				ic.routeFrame(f, skip)
			}
		}
	}()
	_ = forEachMessage(f.buf, uint32(ic.t.maxFrame), &ic.header, func(h *wire.Header, payload []byte) {
		if h.Flags&wire.FlagCancel != 0 || tooLarge(h, ic.t.cfg.Memory.MaxMessageSize) {
			return
		}
		if routed++; routed > skip { // counted first: one whose handler ends the goroutine was routed
			ic.route(f, h, h.Deadline(f.arrived), payload, true)
		}
	})
	returned = true
	ic.writeReplies()
	ic.doneWith(f)
}

// inlineHoldEnds ends the reader's hold that the frame's Inline handlers
// began (runInline), if they did.
func (ic *inConn) inlineHoldEnds() {
	if ic.inlineHeld {
		ic.inlineHeld = false
		ic.holdEnds()
	}
}

// tooLarge reports whether a message read in a batch frame is above this
// node's MaxMessageSize. Batch frames are decoded against the frame's own
// bound, so that one such message is refused alone rather than failing
// its whole frame and connection as malformed.
func tooLarge(h *wire.Header, maxMessageSize int) bool {
	return int64(h.PayloadLength) > int64(maxMessageSize)
}

// forEachMessage decodes the messages of a batch frame, in order, each
// into h, which the caller owns (a reader's own: a header made here would
// live on the heap, since fn gets its address, an allocation a frame). A
// message that runs past the frame's end is malformed, and so is a frame
// with no message: a batch is one or more messages (wire/doc.go), which
// no writer sends empty.
func forEachMessage(frame []byte, maxPayload uint32, h *wire.Header, fn func(h *wire.Header, payload []byte)) error {
	if len(frame) == 0 {
		return fmt.Errorf("%w: empty batch", wire.ErrMalformed)
	}
	for off := 0; off < len(frame); {
		n, err := h.Decode(frame[off:], maxPayload)
		if err != nil {
			if errors.Is(err, wire.ErrTruncated) {
				// The frame's length is known and all of it arrived: a
				// header cut by its end is malformed, not a frame cut short
				// by the connection's end (BadInputTruncated).
				return fmt.Errorf("%w: message header overruns its frame: %w", wire.ErrMalformed, err)
			}
			return err
		}
		end := off + n + int(h.PayloadLength)
		if end > len(frame) {
			return fmt.Errorf("%w: message overruns its frame", wire.ErrMalformed)
		}
		fn(h, frame[off+n:end:end]) // capped: a handler's append must not reach the next message
		off = end
	}
	return nil
}

// countPause adds to ThrottledTime the time the reader has been paused
// since its pause began or was last counted, if it is paused: a pause
// in progress counts as it goes, not only once reading goes on.
func (ic *inConn) countPause() {
	at := ic.pausedAt.Load()
	if at == 0 {
		return
	}
	if now := monoNanos(); now > at && ic.pausedAt.CompareAndSwap(at, now) {
		ic.counters.paused(time.Duration(now - at))
	}
}

// admit takes n bytes of inbound capacity. Out of capacity it waits
// (OverloadPause) until it has them or the connection or the transport
// ends; with OverloadReject, or once Shutdown has begun, it reports
// rejecting instead.
func (ic *inConn) admit(n int64) (rejecting bool, err error) {
	if ic.account.TryTake(n) {
		return false, nil
	}
	if ic.t.cfg.Memory.InboundOverload == OverloadReject && !ic.backClosed.Load() {
		return true, nil
	}
	_, err = ic.waitRoom(ic.account, n, nil, nil, ic.roomWaitStop())
	if err == errShutdownBegan {
		return true, nil
	}
	return false, err
}

// roomWaitStop is what ends a wait for inbound room before the room
// comes: Shutdown's beginning (draining), after which a frame without
// room is refused and its requests answered "shutting down"; but once
// the back channel is closed (finishInbound), no refusal or answer
// reaches the peer, which counted its one-way messages sent, and the
// frame waits for the room its handlers give back, until Close.
func (ic *inConn) roomWaitStop() <-chan struct{} {
	if ic.backClosed.Load() {
		return ic.t.closed
	}
	return ic.t.draining
}

// errShutdownBegan: a wait for room (waitRoom) ended as Shutdown began.
var errShutdownBegan = errors.New("shutdown began")

// waitRoom waits for n bytes of room in a (inbound capacity: the
// connection's account; or the room for rejected compressed frames,
// readBatchS2), reading paused, until it has them, the connection or the
// transport ends, or they can never fit (net.ErrClosed, as the reader
// then ends). The frame read after the wait has Keepalive from its end,
// not from its header. With tryOver, each time
// freed is closed (a small urgent frame's allowance given back) it tries
// for the allowance instead, staying queued in its turn meanwhile, and
// reports over when it took that rather than the room; freed must have
// been had before the caller last tried. A wait for inbound capacity
// ends when stop (the transport's draining) is closed too, as Shutdown
// begins, without the room (errShutdownBegan): its frame is refused
// instead, its requests answered "shutting down", where the room may
// never come before Shutdown ends and closes the connection under them,
// their callers then reading a reset, not an answer.
func (ic *inConn) waitRoom(a *limit.Account, n int64, freed <-chan struct{}, tryOver func() bool, stop <-chan struct{}) (over bool, err error) {
	w, ok := a.WaitFunc(n, nil)
	if w == nil {
		if !ok {
			return false, net.ErrClosed
		}
		return false, nil
	}
	ic.counters.pause()
	ic.pausedAt.Store(max(monoNanos(), 1))
	var sample <-chan time.Time
	if ic.probe != nil && (ic.arrivals.counted || ic.t.measuring()) {
		// The frames behind this one wait in the receive queue: dated
		// by these samples, not when they are read (see arrivals), and
		// measured by them (samplePaused).
		ic.samplePaused()
		tick := time.NewTicker(arrivalSampleEvery)
		defer tick.Stop()
		sample = tick.C
	}
	defer func() {
		if at := ic.pausedAt.Swap(0); at != 0 {
			ic.counters.paused(time.Duration(max(monoNanos()-at, 0)))
		}
		ic.measureRecvQueue(0, true) // what piled up in the kernel while reading paused
		ic.lastRenew = time.Time{}   // the pause may have outlasted the deadline
	}()
	stopped := false
	for {
		select {
		case <-w.Ready():
		case <-ic.done:
		case <-ic.t.closed:
		case <-stop:
			stopped = true
		case <-sample:
			ic.samplePaused()
			continue
		case <-freed:
			freed = ic.t.urgentOverdraftFreedChan() // before it tries again
			if !tryOver() {
				continue
			}
			if w.Cancel() {
				return true, nil
			}
			if w.Granted() { // the room came meanwhile: the allowance goes back
				ic.t.giveBackUrgentOverdraft(ic.peer)
				return false, nil
			}
			return true, nil // the room never can
		}
		break
	}
	switch {
	case w.Cancel() && stopped:
		return false, errShutdownBegan
	case !w.Granted(): // cancelled above, or it can never fit
		return false, net.ErrClosed
	}
	return false, nil
}

// completeCall hands a response from p, read on lane, to the request
// waiting for it, and counts it in p's inbound counters: received when a
// call took it, else dropped. counted, if not nil, runs once it is
// counted and before its call has it: a large response gives its room
// back there, after its count (a peer whose room is all back is quiet,
// and a quiet departed entry is folded away: what it counts after is
// lost) and before its caller, who may look, has it.
func (t *Transport) completeCall(p *peer, lane routing.Lane, h wire.Header, payload []byte, copyPayload bool, counted func()) {
	var r callResult
	if h.Flags&wire.FlagFailure != 0 {
		failure, err := wire.DecodeFailure(payload)
		if err != nil {
			failure = wire.Failure{Code: wire.FailureUnknown, Message: err.Error()}
		}
		r.err = &OpError{Op: "request", Peer: p.id, Lane: lane,
			Err: &RemoteError{Code: failure.Code, Message: failure.Message}}
	} else if copyPayload {
		r.payload = append(make([]byte, 0, len(payload)), payload...)
	} else {
		r.payload = payload
	}
	in := &p.inbound[lane]
	c, ok := t.calls.take(h.ID, p.id)
	switch {
	case ok:
		in.receive(len(payload))
	case r.err != nil:
		// The peer reports a message of ours it dropped: a one-way
		// message it rejected, or a request whose caller gave up.
		in.remoteDrop(reasonOf(r.err))
	default:
		in.drop(ReasonExpired) // its caller stopped waiting
	}
	if counted != nil {
		counted()
	}
	if ok {
		c.done <- r
	}
}

// releaseFrame gives back a frame's capacity and buffer.
func (ic *inConn) releaseFrame(f *inFrame) {
	ic.account.Release(f.held)
	if f.over {
		ic.t.giveBackUrgentOverdraft(ic.peer)
	}
	if f.pooled && f.buf != nil {
		bufpool.Put(f.buf)
	}
	*f = inFrame{}
	framePool.Put(f)
}
