package transport

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
