package memberlist

import (
	"slices"

	"github.com/internode/internode/cluster"
)

// pendingEvent is an event waiting for delivery. seq orders it against
// Watch calls: a watcher registered when the queue's nextSeq was s receives
// exactly the events with seq >= s.
type pendingEvent struct {
	cluster.Event
	seq uint64
}

// eventQueue holds membership events between memberlist's callbacks, which
// must not block, and the goroutine that calls watchers, which may be slow.
//
// It is bounded by coalescing rather than by dropping: for each member it
// holds at most two events, a Leave followed by a Join or Update, because a
// later change to a member that still has a pending event is merged into
// that event:
//
//	pending        + new     = pending after
//	Join(a)        + Update  = Join(b)
//	Update(a)      + Update  = Update(b)
//	Join or Update + Leave   = Leave (an older pending Leave is dropped)
//	Leave          + Join    = Leave, Join (a restart is kept visible)
//
// A merged event takes the new event's seq, so a watcher that registered
// between the two changes still receives it. A watcher therefore sees, per
// member, every change when it keeps up and the latest state when it falls
// behind; it may see a Join for a member it already knows or a Leave for one
// it never saw, and must treat events as "set" and "delete". Merged events
// keep their place in the queue, so under backlog the order between
// different members can differ from the order of the changes.
//
// The input must be a valid sequence per member (Join, then Updates, then
// Leave, then Join again...), which Membership's member map guarantees.
//
// eventQueue is not safe for concurrent use.
type eventQueue struct {
	pending []pendingEvent
	nextSeq uint64 // seq of the next event pushed
}

// push adds ev, merging it with the member's pending events.
func (q *eventQueue) push(ev cluster.Event) {
	seq := q.nextSeq
	q.nextSeq++
	last := q.lastIndex(ev.Member.ID, len(q.pending))
	if last < 0 || q.pending[last].Type == cluster.Leave || ev.Type == cluster.Join {
		q.pending = append(q.pending, pendingEvent{Event: ev, seq: seq})
		return
	}
	// The pending event is a Join or Update; ev is an Update or a Leave.
	if ev.Type != cluster.Leave {
		q.pending[last].Member = ev.Member // Join stays Join, Update stays Update
		q.pending[last].seq = seq
		return
	}
	q.pending[last] = pendingEvent{Event: ev, seq: seq}
	if prev := q.lastIndex(ev.Member.ID, last); prev >= 0 && q.pending[prev].Type == cluster.Leave {
		// The new Leave reaches every watcher the older one did.
		q.pending = slices.Delete(q.pending, prev, prev+1)
	}
}

// pop removes and returns the oldest pending event.
func (q *eventQueue) pop() (pendingEvent, bool) {
	if len(q.pending) == 0 {
		return pendingEvent{}, false
	}
	ev := q.pending[0]
	q.pending[0] = pendingEvent{}
	q.pending = q.pending[1:]
	if len(q.pending) == 0 {
		q.pending = nil // let a drained backlog's array be collected
	}
	return ev, true
}

// len returns the number of pending events.
func (q *eventQueue) len() int { return len(q.pending) }

// lastIndex returns the index of the last pending event for id before
// index end, or -1.
func (q *eventQueue) lastIndex(id cluster.NodeID, end int) int {
	for i := end - 1; i >= 0; i-- {
		if q.pending[i].Member.ID == id {
			return i
		}
	}
	return -1
}
