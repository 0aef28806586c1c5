package transport

import (
	"context"
	"sync"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// maxTombstones is how many cancels of requests not seen yet a node
// remembers per peer: a cancel travels on the urgent lane and may overtake
// its request. Beyond it the oldest are forgotten, and a request whose
// cancel was forgotten runs, its answer unread. They are forgotten too
// once the peer has no connection to this node left (ended): a request
// comes on a connection, and one written on a connection that ended
// never comes.
const maxTombstones = 1024

// cancels is one peer's requests to this node that are waiting or
// running, so that its cancel (a message with wire.FlagCancel and the
// request's ID) can stop them: a waiting one never starts, a running
// one's context is cancelled.
type cancels struct {
	mu    sync.Mutex
	live  map[uint64]*work
	tombs map[uint64]int // cancels that came before their request: their slot in ring
	ring  []uint64       // tombs in arrival order, to forget the oldest
	next  int            // the slot of the next tomb
	full  bool           // every slot of ring was used: the next one holds the oldest
	conns int            // the peer's connections being served (opened, ended)
}

// opened counts a connection of the peer's being served, until ended.
func (c *cancels) opened() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns++
}

// add registers a request as it is handed over; false if its cancel came
// first.
func (c *cancels) add(w *work) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tombs[w.h.ID]; ok {
		delete(c.tombs, w.h.ID)
		return false
	}
	if c.live == nil {
		c.live = make(map[uint64]*work)
	}
	c.live[w.h.ID] = w
	return true
}

// start records the cancel of a request whose handler is about to run,
// or reports why it must not run: ReasonCanceled, its caller cancelled
// it while it waited; ReasonConnectionReset, its connection ended before
// it started — since its caller looked (handle), or without anyone
// looking (a streamed request, whose first part may still be read once
// its connection ended). Its caller has failed it then, and its answer
// has nowhere to go: a handler run for it would run for no one. ended
// closes done first and takes this lock after, so a done still open here
// means ended is yet to come, and finds this cancel.
func (c *cancels) start(w *work, cancel context.CancelFunc) (Reason, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.canceled {
		return ReasonCanceled, false
	}
	select {
	case <-w.ic.done:
		return ReasonConnectionReset, false
	default:
	}
	w.cancel = cancel
	return 0, true
}

// finish reports whether the request was cancelled while its handler ran,
// and stops the cancel from reaching it.
func (c *cancels) finish(w *work) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.cancel = nil
	return w.canceled
}

// forget drops a request that is done.
func (c *cancels) forget(w *work) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live[w.h.ID] == w {
		delete(c.live, w.h.ID)
	}
}

// cancel stops request id: drops it if it waits in a queue for its turn,
// giving back the room it held at once (a slow handler ahead of it may
// hold that turn for long, and the requests behind it wait for the
// room); marks it if it is on its way to its handler, cancels its context
// if it runs; or remembers the cancel for when it comes.
func (c *cancels) cancel(id uint64) {
	if w := c.stop(id); w != nil {
		w.ic.t.dropWithdrawn(w)
	}
}

// stop is cancel under the lock: it returns the request it withdrew from
// its queue, if it did, for the caller to drop. The lock keeps the work
// from being let go of (forget) and reused meanwhile.
func (c *cancels) stop(id uint64) (withdrawn *work) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.live[id]; w != nil {
		w.canceled = true
		switch {
		case w.cancel != nil:
			w.cancel()
		case w.withdraw():
			return w
		}
		return nil
	}
	if c.tombs == nil {
		c.tombs = make(map[uint64]int)
		c.ring = make([]uint64, maxTombstones)
	}
	// The oldest is forgotten unless its request took it, or a later
	// cancel of the same ID holds a slot of its own. Any ID, 0 too, is a
	// tomb's.
	if old, ok := c.tombs[c.ring[c.next]]; c.full && ok && old == c.next {
		delete(c.tombs, c.ring[c.next])
	}
	c.ring[c.next] = id
	c.tombs[id] = c.next
	c.next = (c.next + 1) % maxTombstones
	c.full = c.full || c.next == 0
	return nil
}

// ended cancels the contexts of the running requests that came on ic,
// which has ended: their requesters have failed them (ErrConnectionReset)
// and their answers have nowhere to go, and a handler waiting on its
// context would otherwise run on until its deadline, or for ever without
// one, holding its frame's room all the while. Unlike a requester's
// cancel, it leaves the answer to be dropped with the connection and
// counted there (Dropped[connection reset]), as every response is; a
// waiting request is dropped as it starts, its connection ended (start).
//
// With the peer's last connection the cancels of requests not seen yet
// go: no request can come for them now. A node that accepts unknown
// peers keeps each one's entry until a sweep, and made-up node IDs, each
// sending a frame of cancels, made every entry hold some 48 KB of them.
func (c *cancels) ended(ic *inConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.live {
		if w.ic == ic && w.cancel != nil {
			w.cancel()
		}
	}
	if c.conns--; c.conns == 0 {
		c.tombs, c.ring, c.next, c.full = nil, nil, 0, false
	}
}

// sendCancel tells peer to that the caller of request id gave up: its
// handler's context is cancelled, or if it has not started it never does.
// The cancel travels on the urgent lane, so that it does not wait behind
// the traffic it is meant to spare. It expires with its request
// (expiresAt, monoNanos): past the request's deadline its handler's context
// has ended anyway, and a cancel kept for a peer that cannot be reached
// would hold the lane dialling, and its capacity, for nothing.
func (t *Transport) sendCancel(to cluster.NodeID, verb Verb, id uint64, expiresAt int64) {
	h := wire.Header{Flags: wire.FlagCancel, ID: id, Verb: uint32(verb)}
	if err := t.send(t.ctx, to, false, routing.Urgent, &h, expiresAt, nil, false, nil); err != nil {
		t.log.Debug("internode: cancel not sent", "peer", to, "verb", t.verbName(verb), "err", err)
	}
}
