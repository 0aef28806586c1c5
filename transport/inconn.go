package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// inConn is one accepted message connection. Its reader goroutine decodes
// frames, takes inbound capacity for each before it allocates anything for
// it, and hands whole messages to the connection's dispatcher; its back
// channel carries the acceptor's beats and, on the large lane, grants and
// refusals of large messages.
//
// A reader waits for capacity only where nothing of its own connection can
// be holding the capacity it waits for: on the urgent and small lanes a
// frame's messages are all whole, and on the large lane it never waits at
// all — a large message is granted room before its sender may send its
// payload, so every part that arrives already has its buffer. That is why
// no combination of limits can wedge a connection.
type inConn struct {
	t        *Transport
	id       uint64
	peer     *peer
	from     cluster.NodeID
	lane     routing.Lane
	counters *inCounters
	conn     net.Conn
	src      *bufio.Reader
	probe    *sockstat.Probe // nil when socket measurement is off
	account  *limit.Account  // this connection's share of the peer's inbound budget

	done      chan struct{} // closed when the connection ends
	closeOnce sync.Once
	lastRenew time.Time // when the read deadline was last pushed back

	backMu    sync.Mutex // serialises back-channel writes
	backBuf   []byte
	beatTimer *time.Timer

	// mu guards streams and closed, shared by the reader and the grant
	// callbacks of large messages that waited for room.
	mu      sync.Mutex
	streams map[uint32]*largeIn
	closed  bool

	dispatch dispatchQueue
	msg      Message // reused by the dispatcher for every handler call
}

// inFrame is a unit of work for the dispatcher: one batch frame, whose
// messages it decodes again as it goes (so a frame costs its buffer and
// nothing per message), or one whole large message.
type inFrame struct {
	buf    []byte // the frame, or the large message's payload; owned until release
	pooled bool   // buf came from bufpool and goes back there
	large  *wire.Header
	held   int64 // inbound capacity held until every handler returned
}

var framePool = sync.Pool{New: func() any { return new(inFrame) }}

// largeIn is a large message being received in parts.
type largeIn struct {
	header  wire.Header
	need    int64         // capacity it takes once granted: its buffer's size
	exact   bool          // its buffer is allocated at its length, not from bufpool
	granted bool          // room is reserved and the sender was told
	waiter  *limit.Waiter // while it waits for room
	payload []byte        // from bufpool, allocated at its first part
	got     int
	// streamed is set when a ReaderHandler takes the message as it
	// arrives: parts go to pipe (nil once the handler stopped reading).
	streamed bool
	reader   ReaderHandler
	pipe     *io.PipeWriter
}

// readBufferSize is the read buffer of an accepted connection: enough for
// a frame header and small messages in one read; larger payloads are read
// straight into their own buffers.
const readBufferSize = 1 << 10

func newInConn(t *Transport, p *peer, lane routing.Lane, conn net.Conn) *inConn {
	return &inConn{
		t:        t,
		id:       t.nextConnID.Add(1),
		peer:     p,
		from:     p.id,
		lane:     lane,
		counters: &p.inbound[lane],
		conn:     conn,
		src:      bufio.NewReaderSize(conn, readBufferSize),
		probe:    t.probeFor(conn),
		account:  p.inAccount.Child(t.limitsIn.Load().forLane(lane), true),
		done:     make(chan struct{}),
		streams:  make(map[uint32]*largeIn),
	}
}

// serve runs the connection until it ends. A connection closed for bad
// input — or for silence longer than KeepaliveTimeout — is counted and
// logged (rate limited) before it is closed.
func (ic *inConn) serve() {
	ic.beatTimer = time.AfterFunc(wire.KeepaliveInterval, ic.beat)
	defer ic.end()
	err := ic.read()
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return
	case isTimeout(err):
		select {
		case <-ic.done:
			return // closed here, not silent
		default:
		}
	case errors.As(err, &ne):
		return // the connection broke
	}
	kind := badInputOf(err)
	ic.t.malformed[kind].Add(1)
	ic.t.logs.warn(logKey{badInput: kind + 1}, "internode: closing connection on bad input", "remote", ic.conn.RemoteAddr(),
		"peer", ic.from, "lane", ic.lane, "err", err)
}

// end closes the connection and gives back what its partial messages held.
func (ic *inConn) end() {
	ic.kill()
	ic.beatTimer.Stop()
	ic.mu.Lock()
	ic.closed = true
	streams := ic.streams
	ic.streams = nil
	ic.mu.Unlock()
	for _, m := range streams {
		ic.abandon(m, ReasonConnectionReset)
	}
}

// kill ends the connection: the reader returns, a wait for capacity gives
// up.
func (ic *inConn) kill() {
	ic.closeOnce.Do(func() {
		close(ic.done)
		ic.conn.Close()
	})
}

// beat sends a FrameBeat and schedules the next: the sender learns this
// node is alive even while it is not reading.
func (ic *inConn) beat() {
	select {
	case <-ic.done:
		return
	default:
	}
	if err := ic.sendBack(wire.FrameBeat, 0, nil); err != nil {
		ic.kill()
		return
	}
	ic.beatTimer.Reset(wire.KeepaliveInterval)
}

// sendBack writes one back-channel frame, within the keepalive timeout:
// a sender that does not read its back channel is cut off.
func (ic *inConn) sendBack(kind wire.FrameKind, stream uint32, payload []byte) error {
	ic.backMu.Lock()
	defer ic.backMu.Unlock()
	ic.backBuf = wire.AppendFrameHeader(ic.backBuf[:0], kind, stream, payload)
	ic.backBuf = append(ic.backBuf, payload...)
	if d := ic.t.cfg.Timeouts.Keepalive; d > 0 {
		_ = ic.conn.SetWriteDeadline(time.Now().Add(d))
	}
	_, err := ic.conn.Write(ic.backBuf)
	return err
}

// renewReadDeadline gives the next read KeepaliveTimeout: an idle sender
// pings every KeepaliveInterval, so silence that long means it is gone,
// and a frame trickled slower than that is cut off. The deadline is moved
// only when a quarter of it has passed, to keep timer work off the path.
func (ic *inConn) renewReadDeadline() {
	d := ic.t.cfg.Timeouts.Keepalive
	if d <= 0 {
		return
	}
	if now := time.Now(); now.Sub(ic.lastRenew) > d/4 {
		ic.lastRenew = now
		_ = ic.conn.SetReadDeadline(now.Add(d))
	}
}

// read decodes frames until the connection ends or carries bad input.
func (ic *inConn) read() error {
	var hdr [wire.FrameHeaderSize]byte
	for {
		ic.renewReadDeadline()
		if _, err := io.ReadFull(ic.src, hdr[:]); err != nil {
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
		switch fh.Kind {
		case wire.FrameBatch:
			err = ic.readBatch(fh)
		case wire.FrameLargeBegin:
			err = ic.readLargeBegin(fh)
		case wire.FrameLargeMore:
			err = ic.readLargeMore(fh)
		case wire.FrameLargeCancel:
			err = ic.readLargeCancel(fh)
		case wire.FramePing:
		}
		if err != nil {
			return err
		}
	}
}

// allowed reports whether the initiator of this lane may send kind.
func (ic *inConn) allowed(kind wire.FrameKind) bool {
	switch kind {
	case wire.FramePing:
		return true
	case wire.FrameBatch:
		return ic.lane != routing.Large
	case wire.FrameLargeBegin, wire.FrameLargeMore, wire.FrameLargeCancel:
		return ic.lane == routing.Large
	}
	return false
}

// readPayload reads and verifies a frame's payload into dst.
func (ic *inConn) readPayload(fh wire.FrameHeader, dst []byte) error {
	ic.renewReadDeadline()
	if _, err := io.ReadFull(ic.src, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("frame payload: %w", wire.ErrTruncated)
		}
		return err
	}
	return fh.Verify(dst)
}

// readBatch reads a batch frame once capacity for its buffer is taken.
// Out of capacity, OverloadPause waits (reading stops, so TCP pushes back
// on the sender) and OverloadReject reads the frame into a buffer held
// only while its messages are answered, then rejects them.
func (ic *inConn) readBatch(fh wire.FrameHeader) error {
	held := int64(bufpool.Cap(int(fh.Length)))
	rejecting, err := ic.admit(held)
	if err != nil {
		return err
	}
	if rejecting {
		held = 0
	}
	buf := bufpool.Get(int(fh.Length))
	if err := ic.readPayload(fh, buf); err != nil {
		bufpool.Put(buf)
		ic.account.Release(held)
		return err
	}
	ic.measureRecvQueue()
	f := framePool.Get().(*inFrame)
	f.buf, f.pooled, f.held = buf, true, held
	// Check every message now, and complete responses: their callers
	// wait, and a paused handler must not hold them. The dispatcher gets
	// the frame if anything else is in it.
	others := 0
	err = forEachMessage(buf, uint32(ic.t.cfg.Memory.MaxMessageSize), func(h *wire.Header, payload []byte) {
		if h.Flags&wire.FlagResponse != 0 {
			ic.completeCall(*h, payload, true)
			return
		}
		if rejecting {
			ic.counters.dropped[ReasonOverloaded].Add(1)
			ic.t.respond(ic.from, h, nil, ErrOverloaded)
			return
		}
		others++
	})
	if err != nil || others == 0 {
		ic.releaseFrame(f)
		return err
	}
	ic.handOver(f)
	return nil
}

// forEachMessage decodes the messages of a batch frame, in order. A
// message that runs past the frame's end is malformed.
func forEachMessage(frame []byte, maxPayload uint32, fn func(h *wire.Header, payload []byte)) error {
	for off := 0; off < len(frame); {
		h, n, err := wire.DecodeHeader(frame[off:], maxPayload)
		if err != nil {
			return err
		}
		end := off + n + int(h.PayloadLength)
		if end > len(frame) {
			return fmt.Errorf("%w: message overruns its frame", wire.ErrMalformed)
		}
		fn(&h, frame[off+n:end])
		off = end
	}
	return nil
}

// admit takes n bytes of inbound capacity. Out of capacity it waits
// (OverloadPause) until it has them or the connection or the transport
// ends; with OverloadReject it reports rejecting instead.
func (ic *inConn) admit(n int64) (rejecting bool, err error) {
	if ic.account.TryTake(n) {
		return false, nil
	}
	if ic.t.cfg.Memory.InboundOverload == OverloadReject {
		return true, nil
	}
	ic.counters.throttled.Add(1)
	start := time.Now()
	ok := ic.account.Wait(n, ic.done, ic.t.closed)
	ic.counters.throttledNanos.Add(uint64(time.Since(start)))
	ic.measureRecvQueue() // what piled up in the kernel while reading paused
	if !ok {
		return false, net.ErrClosed
	}
	ic.lastRenew = time.Time{} // the pause may have outlasted the deadline
	return false, nil
}

// measureRecvQueue records the socket's receive-queue depth after a read.
func (ic *inConn) measureRecvQueue() {
	if ic.probe == nil {
		return
	}
	if n, err := ic.probe.RecvQueue(); err == nil {
		ic.peer.recvPeak[ic.lane].Observe(int64(n))
		ic.peer.recvMax[ic.lane].Observe(int64(n))
	}
}

// completeCall hands a response to the request waiting for it.
func (ic *inConn) completeCall(h wire.Header, payload []byte, copyPayload bool) {
	var r callResult
	if h.Flags&wire.FlagFailure != 0 {
		failure, err := wire.DecodeFailure(payload)
		if err != nil {
			failure = wire.Failure{Code: wire.FailureUnknown, Message: err.Error()}
		}
		r.err = &OpError{Op: "request", Peer: ic.from, Lane: ic.lane,
			Err: &RemoteError{Code: failure.Code, Message: failure.Message}}
	} else if copyPayload {
		r.payload = append(make([]byte, 0, len(payload)), payload...)
	} else {
		r.payload = payload
	}
	switch {
	case ic.t.calls.complete(h.ID, ic.from, r):
		ic.counters.received.Add(1)
		ic.counters.receivedBytes.Add(uint64(len(payload)))
	case r.err != nil:
		// The peer reports a message of ours it dropped: a one-way
		// message it rejected, or a request whose caller gave up.
		ic.counters.remoteDropped[reasonOf(r.err)].Add(1)
	default:
		ic.counters.dropped[ReasonExpired].Add(1) // its caller stopped waiting
	}
}

// releaseFrame gives back a frame's capacity and buffer.
func (ic *inConn) releaseFrame(f *inFrame) {
	ic.account.Release(f.held)
	if f.pooled && f.buf != nil {
		bufpool.Put(f.buf)
	}
	*f = inFrame{}
	framePool.Put(f)
}

// readLargeBegin reads the header of a large message and grants it room,
// refuses it, or queues it to be granted once room frees; the reader goes
// on reading meanwhile.
func (ic *inConn) readLargeBegin(fh wire.FrameHeader) error {
	if fh.Length > wire.MaxHeaderSize {
		return fmt.Errorf("%w: large message header of %d bytes", wire.ErrMalformed, fh.Length)
	}
	var buf [wire.MaxHeaderSize]byte
	if err := ic.readPayload(fh, buf[:fh.Length]); err != nil {
		return err
	}
	h, n, err := wire.DecodeHeader(buf[:fh.Length], 1<<32-1)
	if err != nil {
		return err
	}
	if n != int(fh.Length) {
		return fmt.Errorf("%w: large message header followed by %d bytes", wire.ErrMalformed, int(fh.Length)-n)
	}
	h.Params = append([]byte(nil), h.Params...)
	ic.mu.Lock()
	_, dup := ic.streams[fh.Stream]
	count := len(ic.streams)
	ic.mu.Unlock()
	switch {
	case dup:
		return fmt.Errorf("%w: stream %d begun twice", wire.ErrMalformed, fh.Stream)
	case count >= maxInboundStreams:
		return fmt.Errorf("%w: more than %d large messages in flight", wire.ErrMalformed, maxInboundStreams)
	}
	isResponse := h.Flags&wire.FlagResponse != 0
	switch {
	case h.PayloadLength > uint32(ic.t.cfg.Memory.MaxMessageSize):
		return ic.refuse(fh.Stream, ReasonTooLarge, fmt.Sprintf("%d bytes, limit %d", h.PayloadLength, ic.t.cfg.Memory.MaxMessageSize))
	case isResponse && !ic.t.calls.waiting(h.ID, ic.from):
		// Nobody waits for it (its caller gave up, or the peer made it
		// up): refused before a byte of it travels.
		return ic.refuse(fh.Stream, ReasonExpired, "nobody waits for this response")
	case !isResponse && h.Expired(time.Now().UnixNano()):
		return ic.refuse(fh.Stream, ReasonExpired, "")
	}
	m := &largeIn{header: h, need: int64(bufpool.Cap(int(h.PayloadLength)))}
	if in := ic.t.limitsIn.Load(); m.need > min(in.PerPeer, in.Node) {
		// Its pool class would not fit where the message itself does:
		// allocate it at its length instead.
		m.need, m.exact = int64(h.PayloadLength), true
	}
	if rh, ok := (*ic.t.handlers.Load())[Verb(h.Verb)].(readerAdapter); ok && !isResponse {
		// A streamed message holds one frame at a time, not its size; its
		// handler starts once it is granted.
		m.streamed, m.reader = true, rh.h
		m.need = int64(bufpool.Cap(min(ic.t.maxFrame, int(h.PayloadLength))))
	}
	if h.PayloadLength == 0 {
		m.need = 0
	}
	ic.mu.Lock()
	ic.streams[fh.Stream] = m
	ic.mu.Unlock()
	if ic.t.cfg.Memory.InboundOverload == OverloadReject {
		if !ic.account.TryTake(m.need) {
			ic.forget(fh.Stream)
			ic.abandon(m, 0)
			return ic.refuse(fh.Stream, ReasonOverloaded, "")
		}
		return ic.granted(fh.Stream, m)
	}
	w, ok := ic.account.WaitFunc(m.need, func(ok bool) { ic.grantLater(fh.Stream, m, ok) })
	switch {
	case w == nil && ok:
		return ic.granted(fh.Stream, m)
	case w == nil:
		ic.forget(fh.Stream)
		ic.abandon(m, 0)
		return ic.refuse(fh.Stream, ReasonOverloaded, "larger than this node's inbound limits")
	}
	ic.counters.throttled.Add(1)
	ic.mu.Lock()
	if !m.granted { // not granted meanwhile
		m.waiter = w
	}
	ic.mu.Unlock()
	return nil
}

// granted tells the sender that m, on stream, has room; an empty message
// is complete at once.
func (ic *inConn) granted(stream uint32, m *largeIn) error {
	ic.mu.Lock()
	ic.markGranted(m)
	ic.mu.Unlock()
	if err := ic.sendBack(wire.FrameGrant, stream, nil); err != nil {
		return err
	}
	if m.header.PayloadLength == 0 {
		return ic.largeDone(stream, m)
	}
	return nil
}

// grantLater is called by the budget once room for m was granted (or
// found impossible), on the goroutine that freed it.
func (ic *inConn) grantLater(stream uint32, m *largeIn, ok bool) {
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
	if !ok {
		delete(ic.streams, stream)
		ic.mu.Unlock()
		ic.abandon(m, 0)
		if ic.refuse(stream, ReasonOverloaded, "larger than this node's inbound limits") != nil {
			ic.kill()
		}
		return
	}
	ic.markGranted(m)
	empty := m.header.PayloadLength == 0
	ic.mu.Unlock()
	if ic.sendBack(wire.FrameGrant, stream, nil) != nil {
		ic.kill()
	}
	if empty {
		// Nothing follows: the reader would never see it complete.
		ic.mu.Lock()
		if ic.streams[stream] == m {
			delete(ic.streams, stream)
			ic.mu.Unlock()
			ic.deliverLarge(m)
			return
		}
		ic.mu.Unlock()
	}
}

// markGranted records that m has its room, starting its handler if it is
// streamed. ic.mu held.
func (ic *inConn) markGranted(m *largeIn) {
	if m.streamed {
		m.pipe = ic.streamLarge(m.reader, m)
	}
	m.granted = true
}

// refuse tells the sender it will not get room for the message begun on
// stream, and counts it.
func (ic *inConn) refuse(stream uint32, reason Reason, detail string) error {
	ic.counters.dropped[reason].Add(1)
	return ic.sendBack(wire.FrameRefuse, stream, wire.AppendFailure(nil, wire.Failure{Code: reasons[reason].code, Message: detail}))
}

// forget removes stream's entry.
func (ic *inConn) forget(stream uint32) {
	ic.mu.Lock()
	delete(ic.streams, stream)
	ic.mu.Unlock()
}

// abandon gives back what an unfinished large message holds; a non-zero
// reason counts it as dropped with that reason.
func (ic *inConn) abandon(m *largeIn, reason Reason) {
	ic.mu.Lock()
	granted, w := m.granted, m.waiter
	m.waiter = nil
	ic.mu.Unlock()
	if w != nil && !w.Cancel() {
		// Settled meanwhile: grantLater finds the message gone and gives
		// back what it was granted.
		granted = false
	}
	if m.pipe != nil {
		m.pipe.CloseWithError(ErrConnectionReset) // its handler reads the error
		m.pipe = nil
	}
	if granted {
		ic.account.Release(m.need)
	}
	m.putPayload()
	if reason != 0 {
		ic.counters.dropped[reason].Add(1)
	}
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
	if m.streamed {
		buf := bufpool.Get(int(fh.Length))
		err := ic.readPayload(fh, buf)
		if err == nil {
			m.feed(buf)
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
	ic.measureRecvQueue()
	if m.got < int(m.header.PayloadLength) {
		return nil
	}
	return ic.largeDone(fh.Stream, m)
}

// largeDone delivers a large message whose last byte is in.
func (ic *inConn) largeDone(stream uint32, m *largeIn) error {
	ic.forget(stream)
	ic.deliverLarge(m)
	return nil
}

// deliverLarge hands a complete large message on: to its streaming
// handler (end of body), its waiting request, or the dispatcher.
func (ic *inConn) deliverLarge(m *largeIn) {
	if m.streamed {
		if m.pipe != nil {
			m.pipe.Close() // the handler reads io.EOF
		}
		ic.account.Release(m.need)
		return
	}
	h := m.header
	if h.Flags&wire.FlagResponse != 0 {
		// The payload now belongs to the request's caller: it no longer
		// counts against this node's capacity.
		ic.account.Release(m.need)
		ic.completeCall(h, m.payload, false)
		return
	}
	if h.Expired(time.Now().UnixNano()) {
		ic.counters.dropped[ReasonExpired].Add(1)
		ic.account.Release(m.need)
		m.putPayload()
		return
	}
	f := framePool.Get().(*inFrame)
	f.buf, f.pooled, f.large, f.held = m.payload, !m.exact, &m.header, m.need
	ic.handOver(f)
}

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

// readLargeCancel withdraws a large message its sender gave up on.
func (ic *inConn) readLargeCancel(fh wire.FrameHeader) error {
	var buf [wire.MaxFailureMessage + 16]byte
	if fh.Length > uint32(len(buf)) {
		return fmt.Errorf("%w: cancel of %d bytes", wire.ErrMalformed, fh.Length)
	}
	if err := ic.readPayload(fh, buf[:fh.Length]); err != nil {
		return err
	}
	f, err := wire.DecodeFailure(buf[:fh.Length])
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

// dispatchQueue holds an inbound connection's frames for its dispatcher,
// a goroutine that runs while there are frames and calls their handlers
// one at a time, in arrival order. Frames hold their capacity, so the
// queue is bounded in bytes by the inbound limits.
type dispatchQueue struct {
	mu      sync.Mutex
	frames  []*inFrame
	running bool
}

// handOver gives a frame to the dispatcher, starting it if it is not
// running. It never blocks the reader.
func (ic *inConn) handOver(f *inFrame) {
	q := &ic.dispatch
	q.mu.Lock()
	q.frames = append(q.frames, f)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		ic.t.wg.Add(1)
		go ic.dispatchFrames()
	}
}

// dispatchFrames runs handlers until the queue is empty.
func (ic *inConn) dispatchFrames() {
	defer ic.t.wg.Done()
	q := &ic.dispatch
	for {
		q.mu.Lock()
		if len(q.frames) == 0 {
			q.running = false
			q.frames = nil
			q.mu.Unlock()
			return
		}
		f := q.frames[0]
		q.frames[0] = nil
		q.frames = q.frames[1:]
		q.mu.Unlock()
		if f.large != nil {
			if resp := ic.handle(f.large, f.buf); aliases(resp, f.buf) {
				// The response is the lent payload (an echo): the writer
				// sends it from there, so it must not go back to the pool.
				f.buf = nil
			}
		} else {
			// Checked when read: it decodes.
			_ = forEachMessage(f.buf, uint32(ic.t.cfg.Memory.MaxMessageSize), func(h *wire.Header, payload []byte) {
				if h.Flags&wire.FlagResponse == 0 {
					ic.handle(h, payload)
				}
			})
		}
		ic.releaseFrame(f)
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
