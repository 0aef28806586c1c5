package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/internode/internode/routing"
)

// tokenHandler signals each message it starts on got, then waits for a
// token on release before it returns.
type tokenHandler struct {
	got     chan uint64
	release chan struct{}
}

func (h *tokenHandler) ServeMessage(_ context.Context, m *Message) ([]byte, error) {
	h.got <- m.ID
	<-h.release
	return nil, nil
}

// TestOrderedQueueDoesNotGrowWhileItNeverEmpties: an Ordered verb whose
// handler always has the next message waiting (a replication stream
// catching up) kept a slot for every message it ever ran until its queue
// emptied once — uncounted memory without bound, copied under the lock the
// reader takes each time the slice grew. The slots already run are now
// dropped once they are half of it.
func TestOrderedQueueDoesNotGrowWhileItNeverEmpties(t *testing.T) {
	r := newReaderRig(t, routing.Small, nil)
	h := &tokenHandler{got: make(chan uint64, 1), release: make(chan struct{})}
	r.tr.Handle(1, h, Ordered())
	defer close(h.release)
	const n = 5000
	r.write(batchFrame(oneWay(1, []byte("x"))))
	within(t, h.got, 5*time.Second, "message 1")
	for i := uint64(2); i <= n; i++ {
		r.write(batchFrame(oneWay(i, []byte("x")))) // queued behind the running one
		eventually(t, func() bool { return r.ic.dispatch.waiting(1) == 1 }, "the next message queued")
		h.release <- struct{}{} // the running one returns; i starts
		within(t, h.got, 5*time.Second, "the next message")
	}
	d := &r.ic.dispatch
	d.mu.Lock()
	q := d.byVerb[1]
	waiting, length, capacity := q.queue.waiting, len(q.queue.items), cap(q.queue.items)
	d.mu.Unlock()
	assert.Zero(t, waiting, "nothing waits: the last message runs")
	assert.LessOrEqual(t, capacity, maxKeptQueue,
		"queue slots kept for %d messages run (len %d) while at most one waited", n, length)
}

// waiting is how many messages of verb wait in the connection's ordered queue.
func (d *dispatchQueue) waiting(verb uint32) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.byVerb[verb]
	if q == nil {
		return 0
	}
	return q.queue.waiting
}
