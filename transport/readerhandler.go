package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/internode/internode/wire"
)

// ReaderHandler processes the messages of one verb as a stream of bytes
// while they arrive, so that a handler of huge payloads (snapshots, repair
// data) holds one frame in memory, not the whole message.
//
// ServeReader reads the payload from body; body returns io.EOF after the
// last byte, ErrConnectionReset if the connection broke first, or, if the
// sender withdrew the message midway (its caller gave up, or it expired),
// an error wrapping the reason's (context.Canceled, ErrExpired, ...). A large
// message's handler runs as soon as its first part arrives, on its own
// goroutine, so large messages reach their handlers in the order their
// first parts arrived; the connection is read no faster than the handler
// reads body. A small message's handler gets its payload as one read, run
// as Handle's options say like any other. Return values are
// as for Handler. m.Payload is nil.
type ReaderHandler interface {
	ServeReader(ctx context.Context, m *Message, body io.Reader) ([]byte, error)
}

// ReaderHandlerFunc adapts a function to ReaderHandler.
type ReaderHandlerFunc func(ctx context.Context, m *Message, body io.Reader) ([]byte, error)

// ServeReader calls f(ctx, m, body).
func (f ReaderHandlerFunc) ServeReader(ctx context.Context, m *Message, body io.Reader) ([]byte, error) {
	return f(ctx, m, body)
}

// HandleReader registers h for verb, replacing any Handler or
// ReaderHandler registered for it; opts apply to the messages small
// enough to arrive whole (see Handle).
func (t *Transport) HandleReader(verb Verb, h ReaderHandler, opts ...HandleOption) {
	if h == nil {
		t.Handle(verb, nil)
		return
	}
	t.Handle(verb, readerAdapter{h}, opts...)
}

// readerAdapter lets a ReaderHandler sit in the handler table; it is
// called with the whole payload of small messages, and large
// messages are streamed to it directly (see streamLarge).
type readerAdapter struct{ h ReaderHandler }

func (a readerAdapter) ServeMessage(ctx context.Context, m *Message) ([]byte, error) {
	body := bytes.NewReader(m.Payload)
	m.Payload = nil
	return a.h.ServeReader(ctx, m, body)
}

// errHandlerReturned ends a streamed message whose handler returned before
// reading it all; the rest of its parts are discarded.
var errHandlerReturned = errors.New("transport: handler returned before the end of the message")

// streamLarge starts the reader handler of a large message whose first
// part arrived (or that is complete and empty), and returns the pipe its
// parts go to, or nil when the message is dropped (the transport closed,
// expired, or a request its requester already cancelled or whose
// connection ended), its parts then discarded. A request is registered
// for its requester's cancel, as a Handler's is.
func (ic *inConn) streamLarge(h ReaderHandler, m *largeIn) *io.PipeWriter {
	t := ic.t
	hdr := m.header
	isRequest := hdr.Flags&wire.FlagExpectsResponse != 0
	select {
	case <-t.closed:
		// Its first part may be read from the reader's buffer once Close
		// has begun: dropped as a whole message is then (handle).
		ic.counters.drop(ReasonClosed)
		return nil
	default:
	}
	if m.expired() {
		ic.counters.drop(ReasonExpired)
		return nil
	}
	var w *work
	if isRequest {
		if !ic.beginAnswer(&hdr, m.deadline) {
			return nil
		}
		w = &work{ic: ic, h: hdr}
		if !ic.peer.cancels.add(w) {
			ic.counters.drop(ReasonCanceled) // its cancel came first
			ic.answered()
			return nil
		}
	}
	pr, pw := io.Pipe()
	msg := &Message{From: ic.from, Verb: Verb(hdr.Verb), ID: hdr.ID, Lane: ic.lane, Conn: ic.id,
		CreatedAt: time.Unix(0, hdr.CreatedAt), IsRequest: isRequest}
	if m.deadline != 0 {
		msg.ExpiresAt = wallDeadline(m.deadline, time.Now())
	}
	// The message's room goes back with its last part, and its handler
	// may run on long after: the peer's entry is not quiet (peer.quiet)
	// until the handler has counted its outcome (its error, its response
	// queued), or what it counts could land on an entry folded away.
	ic.peer.streamedHandlers.Add(1)
	t.wg.Go(func() {
		defer ic.peer.streamedHandlers.Add(-1)
		ctx, cancel := t.ctx, context.CancelFunc(nil)
		if !msg.ExpiresAt.IsZero() || isRequest {
			ctx, cancel = newHandlerContext(t.ctx, msg.ExpiresAt, time.Now())
		}
		if cancel != nil {
			defer cancel()
		}
		if isRequest {
			defer func() {
				ic.peer.cancels.forget(w)
				ic.answered()
			}()
			// Cancelled between its grant and its first part, or its
			// connection ended before its handler could start.
			if reason, ok := ic.peer.cancels.start(w, cancel); !ok {
				ic.counters.drop(reason)
				pr.CloseWithError(errHandlerReturned)
				return
			}
		}
		ic.counters.receive(int(hdr.PayloadLength))
		ctx, span := t.tel.handlerSpan(ctx, hdr.Params, ic.from, t.verbName(msg.Verb))
		handled := func(resp []byte, err error) {
			endSpan(span, err)
			pr.CloseWithError(errHandlerReturned)
			if err != nil && !isRequest {
				ic.counters.handlerFailed()
			}
			if isRequest && !ic.peer.cancels.finish(w) { // else its caller no longer waits
				t.respond(ic, &hdr, m.deadline, resp, handlerFailure(err))
				ic.answerer().breakHold() // not to wait for the reader's Inline handlers
			}
		}
		returned := false
		defer func() {
			if !returned {
				// The handler ended its goroutine (runtime.Goexit): the
				// rest of the message is discarded and a request
				// answered, as when it returns (errHandlerExited).
				t.log.Error("internode: handler ended its goroutine", "peer", ic.from, "verb", t.verbName(msg.Verb))
				handled(nil, errHandlerExited)
			}
		}()
		resp, err := ic.serveReader(ctx, h, msg, pr)
		returned = true
		handled(resp, err)
	})
	return pw
}

func (ic *inConn) serveReader(ctx context.Context, h ReaderHandler, m *Message, body io.Reader) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			ic.t.log.Error("internode: handler panicked", "peer", m.From, "verb", m.Verb, "panic", r)
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.ServeReader(ctx, m, body)
}

// feed hands a verified part of a streamed message to its handler,
// waiting while the handler has not read the previous one. A handler that
// returned early makes the rest of the message be discarded.
func (m *largeIn) feed(part []byte) {
	if m.pipe == nil || len(part) == 0 {
		return
	}
	if _, err := m.pipe.Write(part); err != nil {
		m.pipe = nil
	}
}
