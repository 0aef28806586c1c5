package transport

import (
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/internode/internode/internal/limit"
)

// outItem is one message waiting in an outbound queue.
type outItem struct {
	id         uint64
	expiresAt  int64 // Unix ns; 0 = never
	enqueuedAt time.Time
	start, end int    // the encoded header (and, on small lanes, payload) in the batch buffer
	payload    []byte // large lane only: the caller's payload, written from where it is
	grant      limit.Grant
	isRequest  bool
}

func (it *outItem) size() int { return it.end - it.start + len(it.payload) }

func (it *outItem) expired(now int64) bool { return it.expiresAt != 0 && now >= it.expiresAt }

// batch is what the writer takes from a queue in one go. buf is a pooled
// buffer owned by the writer until it calls release.
type batch struct {
	buf   *bytebufferpool.ByteBuffer
	items []outItem
	bytes int
}

// outQueue is a connection's FIFO of encoded messages. Producers encode
// straight into a pooled buffer under the lock, so a small message is
// copied once and allocates nothing; the writer swaps the whole buffer out.
// Capacity is taken by the producer before it pushes (see outConn.enqueue)
// and given back when the writer is done with the message.
type outQueue struct {
	mu       sync.Mutex
	buf      *bytebufferpool.ByteBuffer // nil while empty
	items    []outItem
	spare    []outItem // the writer's last item slice, reused
	observed int       // items at the head already shown to the coalescing strategy
	queued   int       // encoded bytes in buf and items
	reserved int       // queued plus bytes the writer has taken and not released
	err      error     // non-nil once the queue refuses messages
}

// push appends a message whose header is already encoded. When
// copyPayload is false the payload is kept by reference (large lane).
func (q *outQueue) push(it outItem, header, payload []byte, copyPayload bool) error {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return q.err
	}
	if q.buf == nil {
		q.buf = bytebufferpool.Get()
	}
	it.start = len(q.buf.B)
	q.buf.B = append(q.buf.B, header...)
	if copyPayload {
		q.buf.B = append(q.buf.B, payload...)
	} else {
		it.payload = payload
	}
	it.end = len(q.buf.B)
	size := it.size()
	q.items = append(q.items, it)
	q.queued += size
	q.reserved += size
	q.mu.Unlock()
	return nil
}

// observeNew calls fn for each queued message not yet observed, in order,
// and returns how many messages and bytes are pending.
func (q *outQueue) observeNew(fn func(*outItem)) (messages, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := q.observed; i < len(q.items); i++ {
		fn(&q.items[i])
	}
	q.observed = len(q.items)
	return len(q.items), q.queued
}

// take hands everything queued to the writer, with how many of its items
// were already observed.
func (q *outQueue) take() (batch, int) {
	q.mu.Lock()
	b := batch{buf: q.buf, items: q.items, bytes: q.queued}
	observed := q.observed
	q.observed = 0
	q.buf = nil
	q.items = q.spare[:0]
	q.spare = nil
	q.queued = 0
	q.mu.Unlock()
	return b, observed
}

// release recycles a written (or failed) batch and returns the capacity
// its messages held, for the caller to give back.
func (q *outQueue) release(b *batch) limit.Grant {
	var g limit.Grant
	for i := range b.items {
		g = g.Add(b.items[i].grant)
	}
	if b.buf != nil {
		bytebufferpool.Put(b.buf)
		b.buf = nil
	}
	clear(b.items) // drop references to large payloads
	q.mu.Lock()
	q.reserved -= b.bytes
	if cap(b.items) <= 4096 {
		q.spare = b.items[:0]
	}
	q.mu.Unlock()
	b.items = nil
	return g
}

// pending returns how many messages and bytes wait to be taken.
func (q *outQueue) pending() (messages, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.queued
}

// shut makes the queue refuse messages with err from now on and returns
// whatever was still queued, for the caller to fail.
func (q *outQueue) shut(err error) batch {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	b, _ := q.take()
	return b
}

// reopen lets a shut queue accept messages again.
func (q *outQueue) reopen() {
	q.mu.Lock()
	q.err = nil
	q.mu.Unlock()
}

// releaseBytes forgets n bytes of messages the writer finished one by one
// (the large lane).
func (q *outQueue) releaseBytes(n int) {
	q.mu.Lock()
	q.reserved -= n
	q.mu.Unlock()
}
