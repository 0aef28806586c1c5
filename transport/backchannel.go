package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// readBack reads the connection's back channel: the acceptor's beats, the
// responses to the requests written on the connection, and on the large
// lane its grants and refusals. Silence longer than Timeouts.Keepalive, a
// frame it may not send, or the connection ending marks the connection
// dead and wakes the writer.
func (c *outConn) readBack(conn *liveConn) {
	defer c.t.wg.Done()
	rx := newResponseReader(c, conn)
	why := rx.read()
	rx.abandonAll()
	conn.kill(why)
	c.wakeWriter()
}

// responseReader reads one outbound connection's back channel. It never
// waits for inbound capacity — responses are what this node's own callers
// wait for, and must not queue behind the peer's requests to it — so a
// batch of responses is read whatever the limits say and counted while it
// is (at most one frame per connection at a time), and a large response
// is granted room only if it fits at once, within the peer's inbound
// capacity or within one connection's limit beyond it (take): otherwise it
// is refused and its call fails with ErrOverloaded.
//
// With wire.CapEagerResponses agreed, a large response's parts follow its
// FrameLargeBegin without a grant — a grant would go out behind this
// connection's own frames, which the peer may have stopped reading — and
// those of a refused one are read and discarded. A response whose caller
// gives up while its parts come, granted or eager, is refused then
// (giveUp), and the peer withdraws the rest of it: by the caller's own
// goroutine as it gives up (refuseGivenUp), or by the reader as the part
// it is reading ends (more), so that a responder that stops between two
// parts does not keep the response's room held for no one.
type responseReader struct {
	c    *outConn
	conn *liveConn
	// mu guards large, discard, overdrawn and each large response's
	// reading, which a caller that gives up also touches (refuseGivenUp).
	// It is never held while the reader waits on the connection.
	mu sync.Mutex
	// src reads conn: a frame's header and a small payload come in one
	// read.
	src   *bufio.Reader
	large map[uint32]*largeResponse // large responses begun, by stream
	eager bool                      // wire.CapEagerResponses: no grants
	// discard is the refused large responses whose parts still come
	// (eager): the payload bytes left of each, by stream.
	discard map[uint32]uint32
	// overdrawn is what the large responses in large hold beyond the
	// peer's inbound capacity.
	overdrawn int64
	header    wire.Header // the message being decoded (forEachMessage)
}

func newResponseReader(c *outConn, conn *liveConn) *responseReader {
	rx := &responseReader{c: c, conn: conn, src: bufio.NewReaderSize(conn, readBufferSize), large: make(map[uint32]*largeResponse),
		eager: conn.caps&wire.CapEagerResponses != 0, discard: make(map[uint32]uint32)}
	conn.responses.Store(rx)
	return rx
}

// largeResponse is a large response arriving in parts, its room granted.
type largeResponse struct {
	header wire.Header
	buf    []byte // from bufpool
	got    int
	held   int64
	// overdrawn: held is beyond the peer's inbound capacity (take).
	overdrawn bool
	exact     bool // buf is allocated at its length, not from bufpool (take)
	// reading: the reader is reading a part into buf, which stays its
	// until the part is in.
	reading bool
}

func (rx *responseReader) read() string {
	c, conn := rx.c, rx.conn
	timeout := c.t.cfg.Timeouts.Keepalive
	hdr := conn.backHeader[:]
	for {
		if timeout > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(timeout))
		}
		if _, err := io.ReadFull(rx.src, hdr); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Sprintf("peer silent for %v", timeout)
			}
			if isLocalAlert(err) || !errors.As(err, &ne) && !errors.Is(err, io.EOF) &&
				!errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
				// TLS refused the acceptor's bytes: a record that fails its
				// check, or whose header it refuses (a RecordHeaderError).
				return rx.badInput(err)
			}
			return "closed by peer"
		}
		// Heard before the frame is acted on: a caller its response
		// completes may look at Health at once.
		now := time.Now().UnixNano()
		conn.heard.Store(monoNanos())
		c.hl.read(now)
		if !conn.answered.Load() && conn.answered.CompareAndSwap(false, true) && c.live.Load() == conn {
			c.hl.answered(now) // the lane is connected: its peer is alive
		}
		fh, err := wire.ParseFrameHeader(hdr, uint32(c.t.maxFrame))
		if err == nil && !rx.allowed(fh.Kind) {
			err = fmt.Errorf("%w: %v frame from the acceptor of a %s lane", wire.ErrMalformed, fh.Kind, c.lane)
		}
		if err == nil && fh.Kind.Empty() {
			// Its checksum covers its header alone, and no payload read
			// (readPayload) checks it: a beat, or a grant whose stream
			// number a flipped bit made another, is checked here.
			err = fh.Verify(nil)
		}
		if err == nil {
			err = rx.frame(fh)
		}
		if err == nil && !c.awaitControlRoom(conn) {
			// Its grants and refusals bounded: an acceptor that does
			// not read them is not read either, and one not heard for
			// Keepalive meanwhile is silent.
			return fmt.Sprintf("peer silent for %v", timeout)
		}
		if err != nil {
			if isTimeout(err) {
				return fmt.Sprintf("peer silent for %v", timeout)
			}
			var ne net.Error
			if !isLocalAlert(err) && (errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
				return "closed by peer"
			}
			return rx.badInput(err)
		}
	}
}

// badInput logs the bad input that ends the connection (rate limited),
// and returns the reason the connection dies of.
func (rx *responseReader) badInput(err error) string {
	rx.c.t.logs.warn(logKey{other: logBadBackChannel}, "internode: closing connection on bad input from its acceptor",
		"peer", rx.c.peer.id, "lane", rx.c.lane, "err", err)
	return "bad back-channel input"
}

// allowed reports whether the acceptor may send kind on this lane:
// beats, responses whole or in parts (whole ones compressed only if the
// handshake agreed wire.CapBatchS2), and on the large lane the grants
// and refusals of this node's own large messages.
func (rx *responseReader) allowed(kind wire.FrameKind) bool {
	switch kind {
	case wire.FrameBeat, wire.FrameBatch, wire.FrameLargeBegin, wire.FrameLargeMore, wire.FrameLargeCancel:
		return true
	case wire.FrameGrant, wire.FrameRefuse:
		return rx.c.lane == routing.Large
	case wire.FrameBatchS2:
		return rx.conn.caps&wire.CapBatchS2 != 0
	}
	return false
}

// frame reads one frame's payload and acts on it.
func (rx *responseReader) frame(fh wire.FrameHeader) error {
	c := rx.c
	switch fh.Kind {
	case wire.FrameBeat:
		return nil
	case wire.FrameGrant:
		if !c.large.deliver(backFrame{stream: fh.Stream}) {
			return errTooManyGrants
		}
	case wire.FrameRefuse:
		f, err := rx.readFailure(fh)
		if err != nil {
			return err
		}
		if !c.large.deliver(backFrame{stream: fh.Stream, refused: &f}) {
			return errTooManyGrants
		}
	case wire.FrameBatch:
		return rx.readBatch(fh)
	case wire.FrameBatchS2:
		return rx.readBatchS2(fh)
	case wire.FrameLargeBegin:
		return rx.begin(fh)
	case wire.FrameLargeMore:
		defer rx.c.t.waker.yieldAfterPart()
		return rx.more(fh)
	case wire.FrameLargeCancel:
		return rx.cancel(fh)
	}
	c.wakeWriter()
	return nil
}

// readPayload reads and verifies a frame's payload into dst.
func (rx *responseReader) readPayload(fh wire.FrameHeader, dst []byte) error {
	return readFramePayload(rx.src, fh, dst)
}

// readFailure reads a frame whose payload is a Failure.
func (rx *responseReader) readFailure(fh wire.FrameHeader) (wire.Failure, error) {
	return readFailureFrame(fh, rx.readPayload)
}

// readBatch reads a frame of whole responses and completes their calls.
func (rx *responseReader) readBatch(fh wire.FrameHeader) error {
	c := rx.c
	held := int64(bufpool.Cap(int(fh.Length)))
	c.peer.inAccount.Overdraw(held)
	defer c.peer.inAccount.Release(held)
	buf := bufpool.Get(int(fh.Length))
	defer bufpool.Put(buf)
	if err := rx.readPayload(fh, buf); err != nil {
		return err
	}
	return rx.handleBatch(buf)
}

// handleBatch completes the calls of the responses in a batch frame.
func (rx *responseReader) handleBatch(buf []byte) error {
	c := rx.c
	// Check every message first: a batch with a bad one (or more than
	// wire.MaxBatchMessages) is malformed as a whole, so none of its
	// responses may complete a call before the bad one is found.
	count := 0
	var bad error
	err := forEachMessage(buf, uint32(c.t.maxFrame), &rx.header, func(h *wire.Header, _ []byte) {
		switch count++; {
		case bad != nil:
		case count > wire.MaxBatchMessages:
			bad = fmt.Errorf("%w: more than %d messages in a frame", wire.ErrMalformed, wire.MaxBatchMessages)
		case h.Flags&wire.FlagResponse == 0:
			bad = fmt.Errorf("%w: a message that is not a response from the acceptor", wire.ErrMalformed)
		}
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return err
	}
	_ = forEachMessage(buf, uint32(c.t.maxFrame), &rx.header, func(h *wire.Header, payload []byte) {
		switch {
		case tooLarge(h, c.t.cfg.Memory.MaxMessageSize):
			// As begin refuses a large one: its call fails, and the
			// connection's other responses are read on.
			c.peer.inbound[c.lane].drop(ReasonTooLarge)
			rx.failCall(h.ID, fmt.Errorf("%w: a response of %d bytes, limit %d", ErrTooLarge, h.PayloadLength, c.t.cfg.Memory.MaxMessageSize))
		default:
			c.t.completeCall(c.peer, c.lane, *h, payload, true, nil) // its frame's room goes back after (readBatch)
		}
	})
	return nil
}

// begin reads the header of a large response and grants it room, or
// refuses it (and, eager, discards its parts).
func (rx *responseReader) begin(fh wire.FrameHeader) error {
	c := rx.c
	if fh.Length > wire.MaxHeaderSize {
		return fmt.Errorf("%w: large message header of %d bytes", wire.ErrMalformed, fh.Length)
	}
	var buf [wire.MaxHeaderSize]byte
	if err := rx.readPayload(fh, buf[:fh.Length]); err != nil {
		return err
	}
	h, n, err := wire.DecodeHeader(buf[:fh.Length], 1<<32-1)
	// Held from the check that its caller waits until the response is in
	// large, where a caller giving up meanwhile finds it.
	rx.mu.Lock()
	defer rx.mu.Unlock()
	switch {
	case err != nil:
		return cutWithin("large message header", err)
	case n != int(fh.Length):
		return fmt.Errorf("%w: large message header followed by %d bytes", wire.ErrMalformed, int(fh.Length)-n)
	case h.Flags&wire.FlagResponse == 0:
		return fmt.Errorf("%w: a large message that is not a response from the acceptor", wire.ErrMalformed)
	case rx.large[fh.Stream] != nil || rx.discarding(fh.Stream):
		return fmt.Errorf("%w: stream %d begun twice", wire.ErrMalformed, fh.Stream)
	case len(rx.large)+len(rx.discard) >= maxInboundStreams:
		return fmt.Errorf("%w: more than %d large messages in flight", wire.ErrMalformed, maxInboundStreams)
	}
	h.Params = nil // not kept: a response's parameters are not used
	in := &c.peer.inbound[c.lane]
	refuse := func(reason Reason, detail string) error {
		in.drop(reason)
		c.control(wire.FrameRefuse, fh.Stream, wire.AppendFailure(nil, wire.Failure{Code: reasons[reason].code, Message: detail}), rx.conn.serial)
		if rx.eager && h.PayloadLength > 0 {
			rx.discard[fh.Stream] = h.PayloadLength
		}
		return nil
	}
	switch {
	case h.PayloadLength > uint32(c.t.cfg.Memory.MaxMessageSize):
		detail := fmt.Sprintf("%d bytes, limit %d", h.PayloadLength, c.t.cfg.Memory.MaxMessageSize)
		rx.failCall(h.ID, fmt.Errorf("%w: a response of %s", ErrTooLarge, detail))
		return refuse(ReasonTooLarge, detail)
	case !c.t.calls.waiting(h.ID, c.peer.id):
		return refuse(ReasonExpired, "nobody waits for this response")
	}
	m := &largeResponse{header: h, held: int64(bufpool.Cap(int(h.PayloadLength)))}
	if !rx.take(m) {
		rx.failCall(h.ID, fmt.Errorf("%w: no room for a response of %d bytes", ErrOverloaded, h.PayloadLength))
		return refuse(ReasonOverloaded, "")
	}
	if !rx.eager {
		c.control(wire.FrameGrant, fh.Stream, nil, rx.conn.serial)
	}
	if h.PayloadLength == 0 {
		rx.complete(m)
		return nil
	}
	if m.exact {
		m.buf = make([]byte, h.PayloadLength)
	} else {
		m.buf = bufpool.Get(int(h.PayloadLength)) // every byte is overwritten before use
	}
	rx.large[fh.Stream] = m
	return nil
}

// failCall fails the call id with err if it waits for this peer's
// response: another peer cannot fail it by naming its ID.
func (rx *responseReader) failCall(id uint64, err error) {
	c := rx.c
	c.t.calls.complete(id, c.peer.id, callResult{err: &OpError{Op: "request", Peer: c.peer.id, Lane: c.lane, Err: err}})
}

// discarding reports whether stream is a refused response whose parts
// are being discarded. The caller holds mu.
func (rx *responseReader) discarding(stream uint32) bool {
	_, ok := rx.discard[stream]
	return ok
}

// more reads a part of a large response. One whose caller gave up is
// refused (giveUp): at the part, or once the part is in, when the caller
// gave up while it came and left the refusal to the reader.
func (rx *responseReader) more(fh wire.FrameHeader) error {
	rx.mu.Lock()
	m := rx.large[fh.Stream]
	switch {
	case m == nil && rx.discarding(fh.Stream):
		rx.mu.Unlock()
		return rx.discardPart(fh)
	case m == nil:
		rx.mu.Unlock()
		return fmt.Errorf("%w: part of unknown stream %d", wire.ErrMalformed, fh.Stream)
	case m.got+int(fh.Length) > int(m.header.PayloadLength):
		rx.mu.Unlock()
		return fmt.Errorf("%w: large message part overruns its length", wire.ErrMalformed)
	case !rx.c.t.calls.waiting(m.header.ID, rx.c.peer.id):
		rx.giveUp(fh.Stream, m)
		rx.mu.Unlock()
		return rx.discardPart(fh)
	}
	m.reading = true
	rx.mu.Unlock()
	err := rx.readPayload(fh, m.buf[m.got:m.got+int(fh.Length)])
	rx.mu.Lock()
	defer rx.mu.Unlock()
	m.reading = false
	if err != nil {
		return err // abandonAll gives back what it holds
	}
	m.got += int(fh.Length)
	switch {
	case m.got == int(m.header.PayloadLength):
		delete(rx.large, fh.Stream)
		rx.complete(m)
	case !rx.c.t.calls.waiting(m.header.ID, rx.c.peer.id):
		rx.giveUp(fh.Stream, m)
	}
	return nil
}

// refuseGivenUp refuses the large response to request id, whose caller
// has just given up, if it is arriving on the connection and no part of
// it is being read; the reader refuses one whose part it is reading once
// the part is in (more), and one that has not begun at its begin. Its
// room is given back at once, rather than at the next part, which a
// responder that stopped between two parts may never write.
func (rx *responseReader) refuseGivenUp(id uint64) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	for stream, m := range rx.large {
		if m.header.ID == id && !m.reading {
			rx.giveUp(stream, m)
			return
		}
	}
}

// giveUp refuses a large response, granted or eager, whose caller gave
// up while its parts came: it is counted dropped, as a whole one nobody
// waits for is (completeCall), its room is given back, and the rest of
// its parts are discarded. The responder withdraws it once it reads the
// refusal, so what is left of it stops rather than crossing the network
// for no one. The caller holds mu.
func (rx *responseReader) giveUp(stream uint32, m *largeResponse) {
	c := rx.c
	delete(rx.large, stream)
	rx.discard[stream] = m.header.PayloadLength - uint32(m.got)
	c.peer.inbound[c.lane].drop(ReasonExpired) // counted first, as in complete
	rx.abandon(m)
	c.control(wire.FrameRefuse, stream, wire.AppendFailure(nil, wire.Failure{Code: reasons[ReasonExpired].code,
		Message: "nobody waits for this response"}), rx.conn.serial)
}

// discardPart reads and drops a part of a refused response.
func (rx *responseReader) discardPart(fh wire.FrameHeader) error {
	rx.mu.Lock()
	left := rx.discard[fh.Stream]
	rx.mu.Unlock()
	if fh.Length > left {
		return fmt.Errorf("%w: large message part overruns its length", wire.ErrMalformed)
	}
	held := int64(bufpool.Cap(int(fh.Length)))
	rx.c.peer.inAccount.Overdraw(held) // as a batch of responses is
	defer rx.c.peer.inAccount.Release(held)
	buf := bufpool.Get(int(fh.Length))
	defer bufpool.Put(buf)
	if err := rx.readPayload(fh, buf); err != nil {
		return err
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if left -= fh.Length; left == 0 {
		delete(rx.discard, fh.Stream)
	} else {
		rx.discard[fh.Stream] = left
	}
	return nil
}

// take finds room for a large response: within the peer's inbound
// capacity, or, when that is full (the peer's requests to this node
// paused, say), beyond it by at most one connection's inbound limit for
// the large responses this connection carries at once. Where its buffer's
// pool class, up to a quarter above its length, does not fit and its
// length does — limits that hold MaxMessageSize and no more, say, which
// validated limits allow — it takes room at its length and is allocated
// at that (exact), as a large request is (readLargeBegin, waitAtLength).
func (rx *responseReader) take(m *largeResponse) bool {
	sizes := [2]int64{m.held, int64(m.header.PayloadLength)}
	if sizes[1] >= sizes[0] {
		sizes[1] = sizes[0] // no smaller size to try
	}
	// Ahead of waiters, as the reply writer takes a response's outbound
	// room: a response cannot wait, and TryTake would refuse it while any
	// large message (another peer's, say) waits at the peer's or the
	// node's account, however much room is free.
	for _, n := range sizes {
		if rx.c.peer.inAccount.TryTakeAhead(n) {
			m.held, m.exact = n, n != sizes[0]
			return true
		}
	}
	for _, n := range sizes {
		if rx.overdrawn+n <= rx.c.t.limitsIn.Load().PerConnection {
			m.held, m.exact = n, n != sizes[0]
			rx.c.peer.inAccount.Overdraw(n)
			rx.overdrawn += n
			m.overdrawn = true
			return true
		}
	}
	return false
}

// give gives back the room m holds.
func (rx *responseReader) give(m *largeResponse) {
	rx.c.peer.inAccount.Release(m.held)
	if m.overdrawn {
		rx.overdrawn -= m.held
	}
}

// complete hands a whole large response to its call; the buffer now
// belongs to the caller and no longer counts against this node's limits.
// Its room goes back once it is counted (see completeCall).
func (rx *responseReader) complete(m *largeResponse) {
	c := rx.c
	c.t.completeCall(c.peer, c.lane, m.header, m.buf[:m.header.PayloadLength:m.header.PayloadLength], false,
		func() { rx.give(m) })
}

// cancel forgets a large response its sender withdrew.
func (rx *responseReader) cancel(fh wire.FrameHeader) error {
	f, err := rx.readFailure(fh)
	if err != nil {
		return err
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	m := rx.large[fh.Stream]
	if m == nil {
		delete(rx.discard, fh.Stream) // refused: no more parts come
		return nil
	}
	delete(rx.large, fh.Stream)
	reason, ok := reasonOfCode(f.Code)
	if !ok {
		reason = ReasonCanceled
	}
	rx.c.peer.inbound[rx.c.lane].drop(reason) // counted first, as in complete
	rx.abandon(m)
	rx.failCall(m.header.ID, &RemoteError{Code: f.Code, Message: f.Message})
	return nil
}

// abandon gives back what a partial large response holds.
func (rx *responseReader) abandon(m *largeResponse) {
	rx.give(m)
	if !m.exact {
		bufpool.Put(m.buf)
	}
	m.buf = nil
}

// abandonAll gives back what the partial large responses hold once the
// connection has ended; their calls fail with it (calls.failConn).
func (rx *responseReader) abandonAll() {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	for stream, m := range rx.large {
		delete(rx.large, stream)
		rx.c.peer.inbound[rx.c.lane].drop(ReasonConnectionReset) // counted first, as in complete
		rx.abandon(m)
	}
}
