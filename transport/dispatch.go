package transport

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unsafe"

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

// handle runs one message's handler and answers a request; it returns the
// response it queued, if any. deadline is the message's, on this node's
// clock (0: none). Every message that reaches it ends in one inbound
// outcome: received (handed to its handler) or dropped with a reason.
func (ic *inConn) handle(h *wire.Header, deadline int64, payload []byte) []byte {
	t := ic.t
	isRequest := h.Flags&wire.FlagExpectsResponse != 0
	select {
	case <-t.closed:
		ic.counters.drop(ReasonClosed)
		return nil
	default:
	}
	if deadline != 0 && time.Now().UnixNano() >= deadline {
		ic.counters.drop(ReasonExpired)
		return nil
	}
	handler := (*t.handlers.Load())[Verb(h.Verb)]
	if handler == nil {
		ic.counters.drop(ReasonUnknownVerb)
		if isRequest {
			t.respond(ic, h, deadline, nil, fmt.Errorf("%w %d", ErrUnknownVerb, h.Verb))
		}
		return nil
	}
	ic.counters.receive(int(len(payload)))
	ctx := t.ctx
	if deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, deadline))
		defer cancel()
	}
	ctx, span := t.tel.handlerSpan(ctx, h.Params, ic.from, Verb(h.Verb))
	m := &ic.msg
	*m = Message{From: ic.from, Verb: Verb(h.Verb), ID: h.ID, Lane: ic.lane, Conn: ic.id,
		CreatedAt: time.Unix(0, h.CreatedAt), Payload: payload, IsRequest: isRequest}
	if deadline != 0 {
		m.ExpiresAt = time.Unix(0, deadline)
	}
	resp, err := ic.serveMessage(ctx, handler, m)
	endSpan(span, err)
	*m = Message{}
	if isRequest {
		t.respond(ic, h, deadline, resp, err)
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
			ic.t.log.Error("internode: handler panicked", "peer", m.From, "verb", m.Verb, "panic", r)
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.ServeMessage(ctx, m)
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
	if err := t.sendOn(t.ctx, ic.replies, &h, deadline, payload, false); err != nil {
		t.log.Debug("internode: response not sent", "peer", ic.from, "err", err)
	}
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
			if resp := ic.handle(f.large, f.deadline, f.buf); aliases(resp, f.buf) {
				// The response is the lent payload (an echo): the writer
				// sends it from there, so it must not go back to the pool.
				f.buf = nil
			}
		} else {
			// Checked when read: it decodes.
			_ = forEachMessage(f.buf, uint32(ic.t.cfg.Memory.MaxMessageSize), func(h *wire.Header, payload []byte) {
				if h.Flags&wire.FlagResponse == 0 {
					ic.handle(h, h.Deadline(f.arrived), payload)
				}
			})
		}
		ic.releaseFrame(f)
	}
}
