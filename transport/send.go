package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Send queues a one-way message to peer and returns once it is queued: it
// does not wait for the write. The context's deadline, if any, becomes the
// message's expiry: a message still queued, or arriving, after it is
// dropped and counted. The transport may keep payload until it is written,
// so the caller must not modify it after Send returns.
//
// Errors: ErrOverloaded (the lane's queue is full), ErrTooLarge,
// ErrUnknownPeer, ErrRefused (to is this node's own ID), ErrClosed, or
// the context's error; each wrapped in an *OpError.
func (t *Transport) Send(ctx context.Context, to cluster.NodeID, verb Verb, payload []byte) error {
	h := wire.Header{ID: t.nextID.Add(1), Verb: uint32(verb), Params: t.tel.traceParams(ctx)}
	var expiresAt int64
	if d, ok := ctx.Deadline(); ok {
		expiresAt = monoDeadline(d)
	}
	lane := t.router.Route(uint32(verb), encodedSize(&h, payload))
	if err := t.send(ctx, to, true, lane, &h, expiresAt, payload, t.cfg.Memory.WaitForCapacity, nil); err != nil {
		return &OpError{Op: "send", Peer: to, Lane: lane, Err: err}
	}
	return nil
}

// Request sends payload to peer and waits for the response. The deadline
// is the context's, or else the verb's default timeout (Config.Timeouts.PerVerb,
// Config.Timeouts.Request); it also becomes the message's expiry.
//
// As with Send, the transport may keep payload until it is written, which
// for a large one can be after Request returned (an early response, a
// cancelled context): the caller must not modify it after the call.
//
// to is the responder's node ID, the one its membership entry and its
// own Config.NodeID carry: the request goes to that entry's address and
// its response comes back on the same connection (see "Requests and
// responses" in the package doc).
//
// Errors: those of Send; a *RemoteError matching ErrUnknownVerb,
// ErrHandler, ErrExpired or ErrOverloaded when the peer failed the request;
// ErrConnectionReset or ErrPeerLeft when its response was lost on the way
// (the peer may or may not have run the request) — at once when the connection it was written on breaks, and, when the peer
// cannot be dialled, at the first failed attempt after the request was
// queued, wrapping the dial's error (ErrOverloaded instead when the peer
// refused the connection for want of room or because it is shutting
// down: the request did not reach it); and the context's error on timeout or
// cancellation (a timeout satisfies net.Error with Timeout() true). Each
// is wrapped in an *OpError.
func (t *Transport) Request(ctx context.Context, to cluster.NodeID, verb Verb, payload []byte) ([]byte, error) {
	start := time.Now()
	// Without a deadline in ctx, the verb's timeout is kept beside it
	// rather than in a context.WithTimeout, which costs a context, a
	// timer and their allocations on every call: the wait for the
	// response uses the call's own timer, reused with the call, and a
	// wait for outbound capacity, the one other wait, ends at the
	// message's expiry (outConn.enqueue).
	deadline, hasDeadline := ctx.Deadline()
	var timeout time.Duration
	if !hasDeadline {
		timeout = t.cfg.requestTimeout(verb)
		deadline = start.Add(timeout)
	}
	name := t.verbName(verb)
	ctx, span, params := t.tel.startRequestSpan(ctx, to, name, int64(start.Sub(processStart)))
	resp, err := t.request(ctx, to, verb, payload, params, deadline, timeout)
	t.tel.recordRequest(name, time.Since(start))
	endSpan(span, err)
	if err != nil {
		err = withVerb(err, name)
	}
	return resp, err
}

// withVerb names the verb in err's *OpError, if it has one that does not.
// It is a function of its own so that oe, whose address errors.As takes,
// is made on the heap only for a failed call, not for every call.
func withVerb(err error, verb string) error {
	var oe *OpError
	if errors.As(err, &oe) && oe.Verb == "" {
		named := *oe // it may be shared by every call its connection took down
		named.Verb = verb
		return &named
	}
	return err
}

// request sends a request and waits for its response until deadline:
// ctx's own, or, when timeout is positive, start+timeout, which ctx does
// not carry.
func (t *Transport) request(ctx context.Context, to cluster.NodeID, verb Verb, payload, params []byte,
	deadline time.Time, timeout time.Duration) ([]byte, error) {
	h := wire.Header{Flags: wire.FlagExpectsResponse, ID: t.nextID.Add(1), Verb: uint32(verb), Params: params}
	lane := t.router.Route(uint32(verb), encodedSize(&h, payload))
	c := t.calls.newCall(to, lane)
	defer t.calls.free(c)
	t.calls.add(h.ID, c)
	expiresAt := monoDeadline(deadline)
	if err := t.send(ctx, to, true, lane, &h, expiresAt, payload, t.cfg.Memory.WaitForCapacity, c); err != nil {
		if _, ok := t.calls.remove(h.ID); !ok {
			<-c.done // failed meanwhile: its channel is emptied for reuse
		}
		return nil, &OpError{Op: "request", Peer: to, Lane: lane, Err: err}
	}
	var expired <-chan time.Time
	if timeout > 0 {
		expired = c.startTimer(time.Until(deadline))
		defer c.stopTimer()
	}
	var err error
	select {
	case r := <-c.done:
		return r.payload, r.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-expired:
		err = context.DeadlineExceeded
	}
	if _, ok := t.calls.remove(h.ID); !ok {
		r := <-c.done // completed meanwhile
		return r.payload, r.err
	}
	t.refuseResponse(to, lane, h.ID)
	withdrawn := false
	if lane == routing.Large {
		// Before the cancel goes: it may end the handler, and with it
		// the wait for what is still to be written.
		t.withdraw(to, h.ID, reasonOf(err))
	} else {
		withdrawn = withdrawQueued(c, lane, h.ID, reasonOf(err), payload)
	}
	if err == context.Canceled && !withdrawn {
		// A deadline the handler has already; a cancel it is told. A
		// request withdrawn unwritten has no handler to tell.
		t.sendCancel(to, verb, h.ID, expiresAt)
	}
	return nil, &OpError{Op: "request", Peer: to, Lane: lane, Err: err}
}

// withdrawQueued withdraws request id from lane of the peer entry its
// call cl was handed to, if it is still queued there (see
// outConn.withdrawQueued), and reports whether it was.
func withdrawQueued(cl *call, lane routing.Lane, id uint64, reason Reason, payload []byte) bool {
	if p := cl.entry.Load(); p != nil {
		if c := p.lanes[lane].Load(); c != nil {
			return c.withdrawQueued(id, reason, payload)
		}
	}
	return false
}

// withdraw asks the large lane to peer to to withdraw request id, whose
// caller gave up: what is not written of it yet never is, and the capacity
// it holds, on both sides, is given back at once rather than when it has
// been written in full for no one.
func (t *Transport) withdraw(to cluster.NodeID, id uint64, reason Reason) {
	if p := (*t.peersView.Load())[to]; p != nil {
		if c := p.lanes[routing.Large].Load(); c != nil {
			c.withdraw(id, reason)
		}
	}
}

// refuseResponse refuses the large response to request id, whose caller
// gave up, if it is arriving on lane's connection to peer to: its room is
// given back at once, and its responder withdraws the rest of it.
func (t *Transport) refuseResponse(to cluster.NodeID, lane routing.Lane, id uint64) {
	if p := (*t.peersView.Load())[to]; p != nil {
		if c := p.lanes[lane].Load(); c != nil {
			if conn := c.live.Load(); conn != nil {
				if rx := conn.responses.Load(); rx != nil {
					rx.refuseGivenUp(id)
				}
			}
		}
	}
}

// outLane is where sendOn queues a message: a lane to a peer (outConn),
// or the way back on an accepted connection (replyWriter).
type outLane interface {
	enqueue(ctx context.Context, it outItem, header, payload []byte, wait bool) error
	drop(r Reason) // counts a message refused before it was queued
}

// send queues one message — one-way or request — on lane of peer to,
// through sendOn. cl is the request's call (nil for a one-way message).
func (t *Transport) send(ctx context.Context, to cluster.NodeID, mustBeMember bool, lane routing.Lane,
	h *wire.Header, expiresAt int64, payload []byte, wait bool, cl *call) error {
	if t.closing.Load() {
		return ErrClosed
	}
	p, err := t.peerFor(to, mustBeMember)
	if err != nil {
		return err
	}
	for {
		c := p.lane(lane)
		if cl != nil {
			// Before it is queued: a Leave of p that misses the call here
			// finds the request queued, or written, and fails it with p's
			// lanes (stop), or after them (membershipChanged).
			cl.entry.Store(p)
		}
		if c == nil {
			err = p.stopErr()
		} else if err = t.sendOn(ctx, c, h, expiresAt, payload, wait); err == errRetired {
			continue // the lane was dropped for being idle: its successor takes it
		}
		if err != errForgotten {
			return err
		}
		// The janitor forgot the entry under this send (a stranger's, quiet,
		// perhaps one that has just joined): look the peer up again.
		if p, err = t.peerFor(to, mustBeMember); err != nil {
			return err
		}
	}
}

// sendOn encodes one message — one-way, request or response — and queues
// it on dst. It is the one send path: every message passes here, and from
// the moment it reaches a lane every failure is counted on that lane, so
// that each ends in exactly one outcome. expiresAt is the message's
// deadline on this node's monotonic clock (monoNanos, 0 = never); h's
// CreatedAt, TTL and PayloadLength are filled in here, and the writer sets
// the TTL again as it writes the message.
func (t *Transport) sendOn(ctx context.Context, dst outLane, h *wire.Header, expiresAt int64, payload []byte, wait bool) error {
	now, mono := t.clock.now()
	h.CreatedAt, h.PayloadLength = now+int64(t.clock.skew), uint32(len(payload))
	if expiresAt != 0 {
		h.TTL = max(expiresAt-mono, 1)
	}
	err := ctx.Err()
	if err != nil && ctx == t.ctx {
		err = ErrClosed // responses and cancels go under the transport's own context: Close ended it
	}
	if err == nil && len(payload) > t.cfg.Memory.MaxMessageSize {
		err = fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), t.cfg.Memory.MaxMessageSize)
	}
	var stack [64]byte
	header := wire.AppendHeader(stack[:0], h)
	it := outItem{id: h.ID, verb: h.Verb, expiresAt: expiresAt, enqueuedAt: mono,
		isRequest: h.Flags&wire.FlagExpectsResponse != 0, isResponse: h.Flags&wire.FlagResponse != 0}
	if err == nil {
		// A call through the interface would make header escape, and
		// cost every message an allocation.
		switch d := dst.(type) {
		case *outConn:
			err = d.enqueue(ctx, it, header, payload, wait)
		case *replyWriter:
			err = d.enqueue(ctx, it, header, payload, wait)
		}
		if err == errRetired || err == errForgotten {
			return err // send tries again: not a drop
		}
	}
	if err != nil {
		dst.drop(reasonOf(err))
	}
	return err
}

// headerOverhead bounds the encoded size of a message header without
// parameters; routing counts it as part of the message's size.
const headerOverhead = 40

// encodedSize bounds the encoded size of a message of header h (its
// parameters, a trace context, included) and payload, which routing
// compares with the large threshold.
func encodedSize(h *wire.Header, payload []byte) int {
	return headerOverhead + len(h.Params) + len(payload)
}
