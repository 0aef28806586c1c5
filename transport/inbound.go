package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/bytebufferpool"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// inConn is one accepted connection: a reader goroutine that decodes
// frames and a dispatcher goroutine that runs handlers in arrival order.
type inConn struct {
	t        *Transport
	id       uint64
	peer     *peer
	probe    *sockstat.Probe // nil when socket measurement is off
	conn     net.Conn
	from     cluster.NodeID
	lane     routing.Lane
	counters *inCounters
	br       *bufio.Reader
	frames   chan *inFrame // reader → dispatcher, bounded
	streams  map[uint32]*largeIn
	tiers    limit.Tiered // this connection's capacity, then the peer's and node's inbound reserves
	msg      Message      // reused by the dispatcher for every handler call
}

// inFrame is a unit of work for the dispatcher: the messages of one batch
// frame (aliasing its pooled buffer) or one whole large message.
type inFrame struct {
	buf   *bytebufferpool.ByteBuffer // owned by the frame until release; nil for a large message
	large []byte                     // a large message's payload from bufpool, owned likewise
	msgs  []inMsg
	grant limit.Grant // inbound capacity held until every handler returned
}

type inMsg struct {
	header  wire.Header
	payload []byte
	size    int // encoded size, header included
}

var framePool = sync.Pool{New: func() any { return new(inFrame) }}

func (f *inFrame) release() {
	if f.buf != nil {
		bytebufferpool.Put(f.buf)
		f.buf = nil
	}
	if f.large != nil {
		bufpool.Put(f.large) // its handler has returned: the payload was only lent
		f.large = nil
	}
	clear(f.msgs)
	f.msgs = f.msgs[:0]
	framePool.Put(f)
}

// largeIn is a large message being received in parts.
type largeIn struct {
	header  wire.Header
	payload []byte // nil while discarding an expired or rejected message
	got     int
	grant   limit.Grant
	dropped Reason // why it is being discarded, when payload and pipe are nil
	// streamed is set when a ReaderHandler takes the message as it
	// arrives: parts go to pipe (nil once the handler stopped reading).
	streamed bool
	pipe     *io.PipeWriter
}

// dispatchQueue is how many decoded frames may wait for the dispatcher
// before the reader stops reading that connection.
const dispatchQueue = 16

// read decodes frames until the connection ends or carries bad input.
func (ic *inConn) read() error {
	defer func() {
		for _, m := range ic.streams { // partial large messages die with the connection
			if m.streamed { // its handler has it, and the grant
				if m.pipe != nil {
					m.pipe.CloseWithError(ErrConnectionReset)
				}
				continue
			}
			ic.tiers.Release(m.grant)
			ic.counters.dropped[ReasonConnectionReset].Add(1)
			if m.payload != nil {
				bufpool.Put(m.payload)
			}
		}
		ic.streams = nil
	}()
	var hdr [wire.FrameHeaderSize]byte
	for {
		if _, err := io.ReadFull(ic.br, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("frame header: %w", wire.ErrTruncated)
			}
			return err
		}
		fh, err := wire.ParseFrameHeader(hdr[:], uint32(ic.t.maxFrame))
		if err != nil {
			return err
		}
		isLargeLane := ic.lane == routing.Large
		if (fh.Kind == wire.FrameBatch) == isLargeLane {
			return fmt.Errorf("%w: frame kind %d on the %s lane", wire.ErrMalformed, fh.Kind, ic.lane)
		}
		switch fh.Kind {
		case wire.FrameBatch:
			err = ic.readBatch(fh)
		case wire.FrameLargeBegin:
			err = ic.readLargeBegin(fh)
		case wire.FrameLargeMore:
			err = ic.readLargeMore(fh)
		}
		if err != nil {
			return err
		}
	}
}

// readPayload reads and verifies a frame's payload into a pooled buffer.
func (ic *inConn) readPayload(fh wire.FrameHeader) (*bytebufferpool.ByteBuffer, error) {
	buf := bytebufferpool.Get()
	buf.B = slices.Grow(buf.B[:0], int(fh.Length))[:fh.Length]
	if err := ic.readVerified(fh, buf.B); err != nil {
		bytebufferpool.Put(buf)
		return nil, err
	}
	return buf, nil
}

func (ic *inConn) readVerified(fh wire.FrameHeader, dst []byte) error {
	if _, err := io.ReadFull(ic.br, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("frame payload: %w", wire.ErrTruncated)
		}
		return err
	}
	return fh.Verify(dst)
}

func (ic *inConn) readBatch(fh wire.FrameHeader) error {
	buf, err := ic.readPayload(fh)
	if err != nil {
		return err
	}
	ic.measureRecvQueue()
	f := framePool.Get().(*inFrame)
	f.buf = buf
	b := buf.B
	now := time.Now().UnixNano()
	for off := 0; off < len(b); {
		h, n, err := wire.DecodeHeader(b[off:], uint32(ic.t.cfg.MaxMessageSize))
		if err != nil {
			f.release()
			return err
		}
		end := off + n + int(h.PayloadLength)
		if end > len(b) {
			f.release()
			return fmt.Errorf("%w: message overruns its frame", wire.ErrMalformed)
		}
		ic.arrived(f, h, b[off+n:end], end-off, now, true)
		off = end
	}
	if len(f.msgs) > 0 {
		size := 0
		for i := range f.msgs {
			size += f.msgs[i].size
		}
		grant, err := ic.acquire(int64(size))
		if err != nil {
			return err
		}
		if grant == nil {
			ic.reject(f.msgs)
			f.release()
			return nil
		}
		f.grant = *grant
	}
	return ic.handOver(f)
}

// acquire takes inbound capacity for size bytes. Out of capacity, it waits
// (OverloadPause: the connection is not read meanwhile, so TCP pushes back
// on the sender) or returns a nil grant (OverloadReject).
func (ic *inConn) acquire(size int64) (*limit.Grant, error) {
	if g, ok := ic.tiers.TryAllocate(size); ok {
		return &g, nil
	}
	if ic.t.cfg.InboundOverload == OverloadReject {
		return nil, nil
	}
	ic.counters.throttled.Add(1)
	start := time.Now()
	g, ok := ic.tiers.Wait(size, ic.t.closed, nil)
	ic.counters.throttledNanos.Add(uint64(time.Since(start)))
	ic.measureRecvQueue() // what piled up in the kernel while reading paused
	if !ok {
		return nil, net.ErrClosed
	}
	return &g, nil
}

// reject drops messages for want of capacity and tells their senders.
func (ic *inConn) reject(msgs []inMsg) {
	for i := range msgs {
		ic.counters.dropped[ReasonOverloaded].Add(1)
		ic.t.respond(ic.from, &msgs[i].header, nil, ErrOverloaded)
	}
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

// arrived routes one decoded message: a response completes its call, an
// expired message is dropped, anything else goes to the dispatcher.
func (ic *inConn) arrived(f *inFrame, h wire.Header, payload []byte, size int, now int64, copyResponse bool) {
	if h.Flags&wire.FlagResponse != 0 {
		var r callResult
		if h.Flags&wire.FlagFailure != 0 {
			failure, err := wire.DecodeFailure(payload)
			if err != nil {
				failure = wire.Failure{Code: wire.FailureUnknown, Message: err.Error()}
			}
			r.err = &OpError{Op: "request", Peer: ic.from, Lane: ic.lane,
				Err: &RemoteError{Code: failure.Code, Message: failure.Message}}
		} else if copyResponse {
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
		return
	}
	if h.Expired(now) {
		ic.counters.dropped[ReasonExpired].Add(1)
		return
	}
	f.msgs = append(f.msgs, inMsg{header: h, payload: payload, size: size})
}

// handOver gives a frame to the dispatcher, waiting while it is busy: that
// wait is what stops reading a connection whose handlers fall behind.
func (ic *inConn) handOver(f *inFrame) error {
	if len(f.msgs) == 0 {
		ic.releaseFrame(f)
		return nil
	}
	select {
	case ic.frames <- f:
		return nil
	default:
	}
	// The dispatcher is behind: reading this connection pauses here too.
	ic.counters.throttled.Add(1)
	start := time.Now()
	defer func() { ic.counters.throttledNanos.Add(uint64(time.Since(start))) }()
	select {
	case ic.frames <- f:
		ic.measureRecvQueue()
		return nil
	case <-ic.t.closed:
		ic.dropFrame(f, ReasonClosed)
		return net.ErrClosed
	}
}

func (ic *inConn) dropFrame(f *inFrame, reason Reason) {
	ic.counters.dropped[reason].Add(uint64(len(f.msgs)))
	ic.releaseFrame(f)
}

// releaseFrame gives back a frame's capacity and buffers.
func (ic *inConn) releaseFrame(f *inFrame) {
	ic.tiers.Release(f.grant)
	f.grant = limit.Grant{}
	f.release()
}

func (ic *inConn) readLargeBegin(fh wire.FrameHeader) error {
	if _, dup := ic.streams[fh.Stream]; dup {
		return fmt.Errorf("%w: stream %d begun twice", wire.ErrMalformed, fh.Stream)
	}
	if len(ic.streams) >= maxInboundStreams {
		return fmt.Errorf("%w: more than %d large messages in flight", wire.ErrMalformed, maxInboundStreams)
	}
	buf, err := ic.readPayload(fh)
	if err != nil {
		return err
	}
	defer bytebufferpool.Put(buf)
	h, n, err := wire.DecodeHeader(buf.B, uint32(ic.t.cfg.MaxMessageSize))
	if err != nil {
		return err
	}
	first := buf.B[n:]
	if len(first) > int(h.PayloadLength) {
		return fmt.Errorf("%w: large message part overruns its length", wire.ErrMalformed)
	}
	h.Params = slices.Clone(h.Params)
	m := &largeIn{header: h, got: len(first)}
	switch {
	case h.Flags&wire.FlagResponse != 0 && !ic.t.calls.waiting(h.ID, ic.from):
		// Nobody waits for it (its caller gave up, or the peer made it
		// up): discard it without allocating its declared size.
		m.dropped = ReasonExpired
	case h.Flags&wire.FlagResponse != 0:
		// Responses are not counted against inbound capacity: their
		// caller is waiting for them and owns the bytes once delivered,
		// so their memory is bounded by the requests this node made.
		m.payload = bufpool.Get(int(h.PayloadLength))
	case h.Expired(time.Now().UnixNano()):
		m.dropped = ReasonExpired
	default:
		rh, streaming := (*ic.t.handlers.Load())[Verb(h.Verb)].(readerAdapter)
		// A streamed message holds one frame at a time, not its size.
		need := int64(n) + int64(h.PayloadLength)
		if streaming {
			need = min(need, int64(ic.t.maxFrame))
		}
		grant, err := ic.acquire(need)
		if err != nil {
			return err
		}
		if grant == nil {
			m.dropped = ReasonOverloaded
			ic.reject([]inMsg{{header: h}})
			break
		}
		m.grant = *grant
		if streaming {
			m.streamed = true
			ic.streams[fh.Stream] = m
			m.pipe = ic.streamLarge(rh.h, m, fh.Stream)
			m.feed(first)
			return ic.largeProgress(fh.Stream, m)
		}
		m.payload = bufpool.Get(int(h.PayloadLength)) // every byte is overwritten before use
	}
	if m.payload != nil {
		copy(m.payload, first)
	}
	ic.streams[fh.Stream] = m
	return ic.largeProgress(fh.Stream, m)
}

func (ic *inConn) readLargeMore(fh wire.FrameHeader) error {
	m := ic.streams[fh.Stream]
	if m == nil {
		return fmt.Errorf("%w: part of unknown stream %d", wire.ErrMalformed, fh.Stream)
	}
	if m.got+int(fh.Length) > int(m.header.PayloadLength) {
		return fmt.Errorf("%w: large message part overruns its length", wire.ErrMalformed)
	}
	if m.payload == nil { // streamed, or discarded (expired, rejected): verify first
		buf, err := ic.readPayload(fh)
		if err != nil {
			return err
		}
		m.feed(buf.B)
		bytebufferpool.Put(buf)
	} else if err := ic.readVerified(fh, m.payload[m.got:m.got+int(fh.Length)]); err != nil {
		return err
	}
	m.got += int(fh.Length)
	ic.measureRecvQueue()
	return ic.largeProgress(fh.Stream, m)
}

// largeProgress delivers a large message once its last byte is in.
func (ic *inConn) largeProgress(stream uint32, m *largeIn) error {
	if m.got < int(m.header.PayloadLength) {
		return nil
	}
	delete(ic.streams, stream)
	if m.streamed {
		if m.pipe != nil {
			m.pipe.Close() // the handler reads io.EOF
		}
		return nil
	}
	if m.payload == nil {
		if m.dropped == ReasonExpired { // a rejected one was counted when rejected
			ic.counters.dropped[ReasonExpired].Add(1)
		}
		return nil
	}
	f := framePool.Get().(*inFrame)
	f.grant = m.grant
	ic.arrived(f, m.header, m.payload, len(m.payload), time.Now().UnixNano(), false)
	switch {
	case m.header.Flags&wire.FlagResponse != 0:
		// The payload now belongs to the request's caller.
	case len(f.msgs) == 0: // expired while it arrived
		bufpool.Put(m.payload)
	default:
		f.large = m.payload // lent to the handler; back to the pool after it
	}
	if len(f.msgs) == 0 {
		ic.releaseFrame(f)
		return nil
	}
	return ic.handOver(f)
}

// dispatch runs handlers for the connection's messages, in order.
func (ic *inConn) dispatch() {
	for f := range ic.frames {
		for i := range f.msgs {
			resp := ic.handle(&f.msgs[i])
			if f.large != nil && aliases(resp, f.large) {
				// The response is the lent payload (an echo): the writer
				// sends it from there, so it must not go back to the pool.
				f.large = nil
			}
		}
		ic.releaseFrame(f)
	}
}

// aliases reports whether a starts inside b's backing array.
func aliases(a, b []byte) bool {
	if len(a) == 0 || cap(b) == 0 {
		return false
	}
	pa := uintptr(unsafe.Pointer(unsafe.SliceData(a)))
	pb := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa >= pb && pa < pb+uintptr(cap(b))
}

// handle runs one message's handler and answers a request; it returns the
// response it queued, if any.
func (ic *inConn) handle(im *inMsg) []byte {
	t := ic.t
	h := &im.header
	isRequest := h.Flags&wire.FlagExpectsResponse != 0
	select {
	case <-t.closed:
		ic.counters.dropped[ReasonClosed].Add(1)
		return nil
	default:
	}
	if h.ExpiresAt != 0 && h.Expired(time.Now().UnixNano()) {
		ic.counters.dropped[ReasonExpired].Add(1)
		return nil
	}
	handler := (*t.handlers.Load())[Verb(h.Verb)]
	if handler == nil {
		ic.counters.dropped[ReasonUnknownVerb].Add(1)
		if isRequest {
			t.respond(ic.from, h, nil, fmt.Errorf("%w %d", ErrUnknownVerb, h.Verb))
		}
		return nil
	}
	ic.counters.received.Add(1)
	ic.counters.receivedBytes.Add(uint64(len(im.payload)))
	ctx := t.ctx
	if h.ExpiresAt != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, h.ExpiresAt))
		defer cancel()
	}
	ctx, span := t.tel.handlerSpan(ctx, h.Params, ic.from, Verb(h.Verb))
	m := &ic.msg
	*m = Message{From: ic.from, Verb: Verb(h.Verb), ID: h.ID, Lane: ic.lane, Conn: ic.id,
		CreatedAt: time.Unix(0, h.CreatedAt), Payload: im.payload, IsRequest: isRequest}
	if h.ExpiresAt != 0 {
		m.ExpiresAt = time.Unix(0, h.ExpiresAt)
	}
	resp, err := ic.serve(ctx, handler, m)
	endSpan(span, err)
	*m = Message{}
	if err != nil && !isRequest {
		ic.counters.dropped[ReasonHandlerError].Add(1)
	}
	if isRequest {
		t.respond(ic.from, h, resp, err)
		return resp
	}
	return nil
}

// serve calls the handler, turning a panic into a handler error so that one
// bad message cannot take the node down.
func (ic *inConn) serve(ctx context.Context, h Handler, m *Message) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			ic.t.log.Error("internode: handler panicked", "peer", m.From, "verb", m.Verb, "panic", r)
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.ServeMessage(ctx, m)
}

// respond sends a request's response, or its failure, back to the requester
// on this node's own connections to it. Failures travel on the urgent lane.
func (t *Transport) respond(to cluster.NodeID, req *wire.Header, payload []byte, herr error) {
	flags := wire.FlagResponse
	if herr != nil {
		flags |= wire.FlagFailure
		payload = wire.AppendFailure(nil, wire.Failure{Code: failureCode(herr), Message: herr.Error()})
	}
	h := wire.Header{Flags: flags, ID: req.ID, Verb: req.Verb, CreatedAt: time.Now().UnixNano(),
		ExpiresAt: req.ExpiresAt, PayloadLength: uint32(len(payload))}
	lane := t.router.Route(req.Verb, len(payload)+headerOverhead)
	if herr != nil {
		lane = routing.Urgent
	}
	if len(payload) > t.cfg.MaxMessageSize {
		t.respond(to, req, nil, fmt.Errorf("%w: response of %d bytes", ErrTooLarge, len(payload)))
		return
	}
	p, err := t.peerFor(to, false)
	if err != nil {
		return
	}
	c := p.lane(lane)
	if c == nil {
		return
	}
	if err := c.enqueue(t.ctx, &h, payload, false, false, time.Now()); err != nil {
		c.counters.dropped[reasonOf(err)].Add(1)
		t.log.Debug("internode: response not sent", "peer", to, "err", err)
	}
}
