package transport

import (
	"container/heap"
	"time"
)

// workQueue is a FIFO of messages waiting for their turn: one peer's in a
// verb's stage, or one verb's on a connection (orderedQueue). A request
// its caller cancels is withdrawn from where it waits (withdraw), so that
// it gives back its frame's room at once rather than holding it until its
// turn comes: its slot is left empty and passed over. Each work records
// its slot's number (work.slot), so that a withdrawal costs the same
// wherever in the queue it waits.
type workQueue struct {
	items   []*work // items[head:] wait, but for the empty slots of withdrawn work
	head    int
	base    int64 // the slot number of items[0]
	waiting int   // the work in items[head:]
}

// push queues w.
func (q *workQueue) push(w *work) {
	w.slot = q.base + int64(len(q.items))
	q.items = append(q.items, w)
	q.waiting++
}

// pop takes the first work waiting, or nil if none does. An emptied
// queue keeps its slots for the next burst unless there are more than
// keep of them.
func (q *workQueue) pop(keep int) *work {
	for q.head < len(q.items) {
		w := q.items[q.head]
		q.items[q.head] = nil
		q.head++
		if w != nil {
			q.waiting--
			q.trim(keep)
			return w
		}
	}
	q.trim(keep)
	return nil
}

// withdraw takes w out of the queue and reports whether it waited there.
func (q *workQueue) withdraw(w *work, keep int) bool {
	i := w.slot - q.base
	if i < int64(q.head) || i >= int64(len(q.items)) || q.items[i] != w {
		return false
	}
	q.items[i] = nil
	q.waiting--
	q.trim(keep)
	return true
}

// trim lets go of the slots already passed: all of them once nothing
// waits, keeping at most keep for the next burst; and the first half, once
// that many have been passed, or a queue that never empties keeps a slot
// for every message it ever held.
func (q *workQueue) trim(keep int) {
	switch {
	case q.waiting == 0:
		// Every slot is empty.
		q.base += int64(len(q.items))
		if cap(q.items) <= keep {
			q.items = q.items[:0]
		} else {
			q.items = nil // let a deep queue's array be reclaimed
		}
		q.head = 0
	case q.head >= 64 && 2*q.head >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.base += int64(q.head)
		q.items, q.head = q.items[:n], 0
	}
}

// expiries is the work with a deadline that waits in a set of queues — a
// stage's, or a connection's ordered queues — soonest deadline first, so
// that work whose deadline passes while it waits leaves its queue then,
// its room given back, as a cancelled request's does (withdraw), rather
// than holding that room until its turn comes only to be dropped: a slow
// handler may hold that turn for long, and the live messages behind it
// wait for the room, or are refused it. A timer rings at the soonest
// deadline (stage.expire, inConn.expireOrdered). The queues' lock guards it.
type expiries struct {
	heap  expiryHeap
	armed int64 // the deadline the timer is set for (monoNanos); 0: not set
	timer *time.Timer
}

// expiryHeap orders work by deadline, soonest first (container/heap);
// work.expiry is its index + 1, for heap.Remove.
type expiryHeap []*work

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].expiry, h[j].expiry = i+1, j+1
}
func (h *expiryHeap) Push(x any) {
	w := x.(*work)
	*h = append(*h, w)
	w.expiry = len(*h)
}
func (h *expiryHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.expiry = 0
	return w
}

// keptExpirySlots is the most slots an emptied expiries keeps.
const keptExpirySlots = 256

// add records w, queued at now (monoNanos), if it has a deadline, and
// reports the wait after which the timer must ring, if it must be set for
// w (arm): the timer is set for the soonest deadline it has seen since it
// last rang, which work taken meanwhile leaves in place, so that a burst
// through a queue costs one setting, not one a message.
func (e *expiries) add(w *work, now int64) (d time.Duration, arm bool) {
	if w.deadline == 0 {
		return 0, false
	}
	heap.Push(&e.heap, w)
	if e.armed != 0 && e.armed <= w.deadline {
		return 0, false
	}
	e.armed = w.deadline
	return time.Duration(w.deadline - now), true
}

// arm sets the timer to ring after d, calling ring.
func (e *expiries) arm(d time.Duration, ring func()) {
	if e.timer == nil {
		e.timer = time.AfterFunc(d, ring)
	} else {
		e.timer.Reset(d)
	}
}

// remove forgets w, which no longer waits.
func (e *expiries) remove(w *work) {
	if w.expiry == 0 {
		return
	}
	heap.Remove(&e.heap, w.expiry-1)
	if len(e.heap) == 0 && cap(e.heap) > keptExpirySlots {
		e.heap = nil // let a deep queue's array be reclaimed
	}
}

// stopIfIdle stops the timer when no work with a deadline waits, for
// queues that take no more (a connection that ended): set for the
// deadline of work long gone, it would hold them, and all they reach,
// until then. The next add sets it again.
func (e *expiries) stopIfIdle() {
	if len(e.heap) == 0 && e.timer != nil {
		e.timer.Stop()
		e.armed = 0
	}
}

// due takes out of e the work whose deadline has passed at now
// (monoNanos) — expired as handle finds it — and reports the wait after
// which the timer must ring again, for the soonest deadline left, if
// any. The timer has rung: the caller sets it (arm) if rearm.
func (e *expiries) due(now int64) (expired []*work, d time.Duration, rearm bool) {
	for len(e.heap) > 0 && now >= e.heap[0].deadline {
		w := e.heap[0]
		e.remove(w)
		expired = append(expired, w)
	}
	e.armed = 0
	if len(e.heap) == 0 {
		return expired, 0, false
	}
	e.armed = e.heap[0].deadline
	return expired, time.Duration(e.armed - now), true
}

// rang is due for the timer that rang, whose ring it sets again for the
// soonest deadline left. It returns the transport of the expired work
// with t.wg held for their drops (dropExpired): the timer's goroutine is
// none that Close waits for, while one that it waits for takes the work
// waiting, or is queueing it (a worker of the stage, a connection's
// runQueue, its reader), so the count is above zero. Once the transport
// has closed it takes nothing: the workers drop what waits as they take
// it, counted as closed.
func (e *expiries) rang(ring func()) (expired []*work, t *Transport) {
	if len(e.heap) == 0 {
		e.armed = 0
		return nil, nil
	}
	t = e.heap[0].ic.t
	select {
	case <-t.closed:
		e.armed = 0
		return nil, nil
	default:
	}
	expired, d, rearm := e.due(monoNanos())
	if rearm {
		e.arm(d, ring)
	}
	if len(expired) > 0 {
		t.wg.Add(1)
	}
	return expired, t
}
