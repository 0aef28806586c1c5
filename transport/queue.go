package transport

import (
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/internode/internode/wire"
	"github.com/valyala/bytebufferpool"
)

// outItem is one message waiting in an outbound queue. It is kept small:
// its own size counts against the connection's capacity (outItemCost).
type outItem struct {
	id         uint64
	expiresAt  int64  // monoNanos; 0 = never
	enqueuedAt int64  // monotonic (monoNanos), not moved by a step of the wall clock
	payload    []byte // large lane only: the caller's payload, written from where it is
	start, end int32  // the encoded header (and, on small lanes, payload) in its segment's buffer
	verb       uint32
	headerLen  uint16 // of the encoding at start
	isRequest  bool
	isResponse bool
}

// outItemCost is what queueing a message costs beside its encoding: the
// capacity a message holds is its encoded size plus this.
const outItemCost = int(unsafe.Sizeof(outItem{}))

// size is the message's encoded size.
func (it *outItem) size() int { return int(it.end-it.start) + len(it.payload) }

// isCancel reports whether it is a cancel: no payload of its own, and the
// flag in its encoded header in buf, its segment's buffer.
func (it *outItem) isCancel(buf []byte) bool {
	return it.payload == nil && wire.MessageFlags(buf[it.start])&wire.FlagCancel != 0
}

// held is the capacity the message holds: its encoding and its item.
func (it *outItem) held() int { return it.size() + outItemCost }

// enqueued returns when the message was queued.
func (it *outItem) enqueued() time.Time { return monoTime(it.enqueuedAt) }

// payloadIn returns the message's payload, given its segment's buffer.
func (it *outItem) payloadIn(buf []byte) []byte {
	if it.payload != nil {
		return it.payload
	}
	return buf[it.start+int32(it.headerLen) : it.end]
}

func (it *outItem) expired(now int64) bool { return it.expiresAt != 0 && now >= it.expiresAt }

// segmentBytes is the size at which a queue starts a new segment. The
// writer takes one segment per write, so it also bounds one vectored write,
// and a connection's buffers never grow past it however deep its queue.
// A writer that keeps up with its producers writes less than a segment at
// a time; one that falls behind (producers that outnumber the cores, as
// the bench's small scenario's 8 senders on 2) writes whole ones, and each
// write costs it a wait for a processor once the system call is over: 512
// KiB wrote 1.09× the messages a second of 256 KiB there (5 of 5
// alternated runs), with the same peak RSS in the saturate scenario; 1 MiB
// wrote 1.10× (3 of 3), at 1.28× the peak RSS.
const segmentBytes = 512 << 10

// batch is one segment of a queue: encoded messages back to back in a
// pooled buffer, and what the writer needs to know of each. The writer
// owns a batch it took until it gives it back with release.
type batch struct {
	buf     *bytebufferpool.ByteBuffer
	items   []outItem
	encoded int   // encoded bytes of the items
	bytes   int   // capacity the items hold (see outItem.held)
	soonest int64 // the earliest deadline of the items (monoNanos; 0: none)
}

// outQueue is a connection's FIFO of encoded messages, in segments.
// Producers encode straight into the last segment's buffer under the lock,
// so a small message is copied once and allocates nothing; the writer takes
// the first segment whole. Capacity is taken by the producer before it
// pushes (see outConn.enqueue) and given back when the writer is done.
type outQueue struct {
	mu       sync.Mutex
	segments []*batch // FIFO; the last one takes new messages
	messages int      // queued messages
	queued   int      // queued encoded bytes
	reserved int      // queued plus bytes the writer has taken and not released
	taken    int      // messages the large lane's writer took and has not finished (takeToFinish)
	observed int      // messages at the head already shown to the coalescing strategy
	err      error    // non-nil once the queue refuses messages
	// soonest is the earliest deadline queued (monoNanos; 0: none has
	// one), the least of its segments': push lowers it, and take and
	// prune work it out again. It is exact when read because the writer
	// does not wait to coalesce past it (askWait): a deadline of a message
	// already written, left in it, would cost waits for nothing.
	soonest int64
	// soonestStale says a withdrawal (cut) took a message whose deadline
	// may be soonest's or its segment's: they are worked out again when
	// soonest is next read (freshSoonest), not at each withdrawal, which
	// would cost a pass over a segment's items for each of the requests
	// that time out in turn behind a peer that stopped reading.
	soonestStale bool
}

// push appends a message whose header is already encoded, and returns how
// many messages are queued with it. When copyPayload is false the payload
// is kept by reference (large lane).
func (q *outQueue) push(it outItem, header, payload []byte, copyPayload bool) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return 0, q.err
	}
	encoded := len(header) + len(payload)
	held := encoded + outItemCost
	inBuffer := len(header) // what this message adds to the segment's buffer
	if copyPayload {
		inBuffer += len(payload)
	}
	var seg *batch
	if n := len(q.segments); n > 0 {
		seg = q.segments[n-1]
	}
	if seg == nil || (len(seg.items) > 0 && len(seg.buf.B)+inBuffer > segmentBytes) {
		deep := seg != nil
		seg = q.newSegment()
		if deep && copyPayload {
			// The queue is a segment deep already: size this one for a
			// whole segment at once rather than growing it by doubling.
			seg.buf.B = slices.Grow(seg.buf.B, segmentBytes+inBuffer)
			seg.items = slices.Grow(seg.items, segmentBytes/256)
		}
		q.segments = append(q.segments, seg)
	}
	it.start = int32(len(seg.buf.B))
	it.headerLen = uint16(len(header))
	seg.buf.B = append(seg.buf.B, header...)
	if copyPayload {
		seg.buf.B = append(seg.buf.B, payload...)
	} else {
		it.payload = payload
	}
	it.end = int32(len(seg.buf.B))
	if it.expiresAt != 0 {
		seg.soonest = earlier(seg.soonest, it.expiresAt)
		q.soonest = earlier(q.soonest, it.expiresAt)
	}
	seg.items = append(seg.items, it)
	seg.encoded += encoded
	seg.bytes += held
	q.messages++
	q.queued += encoded
	q.reserved += held
	return q.messages, nil
}

// spareSegments keeps a few emptied segments for the queues of every
// connection to reuse, so that queues that drain and refill allocate
// almost nothing. It is bounded — at most spareSegmentCount segments of at
// most 2×segmentBytes and their items, a few MiB for the whole process —
// because it is memory outside every limit.
var spareSegments = make(chan *batch, spareSegmentCount)

const spareSegmentCount = 8

// newSegment returns an empty segment, a spare one if there is one.
func (q *outQueue) newSegment() *batch {
	select {
	case seg := <-spareSegments:
		return seg
	default:
		return &batch{buf: new(bytebufferpool.ByteBuffer)}
	}
}

// observeNew calls fn for each queued message not yet observed, in order,
// and returns how many messages and bytes are pending and the earliest
// deadline queued (as nextExpiry).
func (q *outQueue) observeNew(fn func(*outItem)) (messages, bytes int, soonest int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	skip := q.observed
	for _, seg := range q.segments {
		if skip >= len(seg.items) {
			skip -= len(seg.items)
			continue
		}
		for i := skip; i < len(seg.items); i++ {
			fn(&seg.items[i])
		}
		skip = 0
	}
	q.observed = q.messages
	return q.messages, q.queued, q.freshSoonest()
}

// takeShown is take for the writer, which also learns whether messages
// the coalescing strategy has seen (observeNew) stay queued behind the
// segment taken.
func (q *outQueue) takeShown() (b *batch, observed int, shownLeft bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, observed = q.takeLocked()
	return b, observed, q.observed > 0
}

// keptSegmentSlots is the most slots of its segment list an emptied queue
// keeps for the next push.
const keptSegmentSlots = 16

// take hands the oldest segment to the writer, with how many of its
// messages were already observed. It returns nil when the queue is empty.
func (q *outQueue) take() (*batch, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeLocked()
}

// takeToFinish is take for the large lane's writer, which finishes the
// segment's messages one by one (waiting to begin, for their grants, or
// written in parts): they count as taken, in the same step as they leave
// the queue, until each is finished.
func (q *outQueue) takeToFinish() *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, _ := q.takeLocked()
	if b != nil {
		q.taken += len(b.items)
	}
	return b
}

// takeWithin is take for a producer writing its own message: it hands over
// the oldest segment only if the queue holds at most limit bytes, looked
// at in the same step as it takes them. Other producers may have queued
// more since the producer last looked, into that same segment.
func (q *outQueue) takeWithin(limit int) (*batch, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued > limit {
		return nil, 0
	}
	return q.takeLocked()
}

// takeLocked is take for a caller that holds mu.
func (q *outQueue) takeLocked() (*batch, int) {
	if len(q.segments) == 0 {
		return nil, 0
	}
	seg := q.segments[0]
	q.segments[0] = nil
	switch {
	case len(q.segments) > 1:
		q.segments = q.segments[1:]
	case cap(q.segments) <= keptSegmentSlots:
		// Emptied: the next push reuses the slot rather than allocate
		// a new array, as it would for every message of a quiet lane.
		q.segments = q.segments[:0]
	default:
		q.segments = nil // let a deep queue's array be reclaimed
	}
	observed := min(q.observed, len(seg.items))
	q.observed -= observed
	q.messages -= len(seg.items)
	q.queued -= seg.encoded
	if seg.soonest != 0 && seg.soonest == q.soonest {
		q.soonest = 0
		for _, left := range q.segments {
			q.soonest = earlier(q.soonest, left.soonest)
		}
	}
	return seg, observed
}

// earlier returns the earlier of two deadlines (monoNanos; 0: none).
func earlier(a, b int64) int64 {
	if a == 0 || b != 0 && b < a {
		return b
	}
	return a
}

// nextExpiry returns the earliest deadline queued (monoNanos), or 0 when
// no queued message has one.
func (q *outQueue) nextExpiry() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.freshSoonest()
}

// freshSoonest returns soonest, worked out again from the items if a
// withdrawal left it stale (soonestStale). The caller holds mu.
func (q *outQueue) freshSoonest() int64 {
	if q.soonestStale {
		q.soonestStale = false
		q.soonest = 0
		for _, seg := range q.segments {
			seg.soonest = 0
			for i := range seg.items {
				seg.soonest = earlier(seg.soonest, seg.items[i].expiresAt)
			}
			q.soonest = earlier(q.soonest, seg.soonest)
		}
	}
	return q.soonest
}

// release recycles a segment the writer is done with and returns the
// capacity its messages held, for the caller to give back.
func (q *outQueue) release(seg *batch) int64 {
	held := int64(seg.bytes)
	q.mu.Lock()
	q.reserved -= seg.bytes
	q.mu.Unlock()
	recycle(seg)
	return held
}

// recycle empties a segment no one uses any more and keeps it as a spare
// if it is not oversized.
func recycle(seg *batch) {
	clear(seg.items) // drop references to large payloads
	seg.items = seg.items[:0]
	seg.buf.Reset()
	seg.bytes, seg.encoded, seg.soonest = 0, 0, 0
	if cap(seg.buf.B) <= 2*segmentBytes && cap(seg.items) <= 2*segmentBytes/64 {
		select {
		case spareSegments <- seg:
		default:
		}
	}
}

// finished forgets a message the writer took (takeToFinish) and
// finished, written or failed, and the n bytes it held.
func (q *outQueue) finished(n int) {
	q.mu.Lock()
	q.reserved -= n
	q.taken--
	q.mu.Unlock()
}

// pending returns how many messages and bytes wait to be taken.
func (q *outQueue) pending() (messages, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.messages, q.queued
}

// unfinished returns how many messages are queued, or taken by the large
// lane's writer and not finished (takeToFinish).
func (q *outQueue) unfinished() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.messages + q.taken
}

// held returns how many bytes are queued or being written.
func (q *outQueue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.reserved
}

// prune removes the messages for which drop returns true, keeping the rest
// in order, and returns them and the bytes they held, for the caller to
// fail and give back once the queue's lock is let go (failing a message
// calls Config.OnDropped, which may read the queue through Stats). The
// payloads it returns of a small lane's messages are copies: a request
// withdrawn meanwhile (withdraw) moves the bytes of its segment.
//
// A segment it empties leaves the queue (to the collector). Kept, it
// was a segment without a message ahead of the others: a producer
// writing its own message to the quiet lane (writeFromCaller) took it,
// wrote nothing, and went its way as if it had written, its message still
// queued behind and the writer not woken, until the lane's next ping.
func (q *outQueue) prune(drop func(it *outItem) bool) (dropped []outMsg, removed int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	seen := 0
	observed := q.observed
	soonest := int64(0)
	var copies []byte
	segments := q.segments[:0]
	for _, seg := range q.segments {
		seg.soonest = 0
		kept := seg.items[:0]
		for _, it := range seg.items {
			wasObserved := seen < q.observed
			seen++
			if drop(&it) {
				m := it.msg(seg.buf.B)
				if it.payload == nil {
					// A copy: withdraw may move the buffer's bytes once
					// the lock is let go. Appended to one array, the
					// earlier copies staying where they were.
					copies = append(copies, m.payload...)
					m.payload = copies[len(copies)-len(m.payload) : len(copies) : len(copies)]
				}
				dropped = append(dropped, m)
				size, held := it.size(), it.held()
				removed += int64(held)
				seg.bytes -= held
				seg.encoded -= size
				q.messages--
				q.queued -= size
				q.reserved -= held
				if wasObserved {
					observed--
				}
				continue
			}
			seg.soonest = earlier(seg.soonest, it.expiresAt)
			soonest = earlier(soonest, it.expiresAt)
			kept = append(kept, it)
		}
		clear(seg.items[len(kept):])
		seg.items = kept
		if len(kept) > 0 {
			segments = append(segments, seg)
		}
	}
	clear(q.segments[len(segments):])
	q.segments = segments
	q.observed = observed
	q.soonest, q.soonestStale = soonest, false
	return dropped, removed
}

// withdraw takes request id, whose caller gave up, out of the queue if
// it is still there, and returns it as failed needs it (without its
// payload: its bytes are overwritten) and the capacity it held, for the
// caller to fail it and give that back once the lock is let go. It
// reports false when no such request is queued: the writer took it
// (taking a segment, under this lock, is where a message counts as
// written), or it failed already. Its bytes are cut out of its
// segment's buffer, the messages behind them moved up: left there, bytes
// no capacity held any more would pile up in the buffers of a queue
// whose writer is stuck, while producers queue more in the capacity given
// back. The cost is a copy of what follows it in its segment, at most a
// segment, on a path taken only for a request given up while queued.
func (q *outQueue) withdraw(id uint64) (m outMsg, held int64, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.messages == 0 {
		return outMsg{}, 0, false
	}
	seen := 0 // the messages of the segments before seg
	for si, seg := range q.segments {
		for i := range seg.items {
			if it := &seg.items[i]; it.id == id && it.isRequest {
				m = it.msg(seg.buf.B)
				m.payload = nil
				return m, int64(q.cut(si, i, seen+i < q.observed)), true
			}
		}
		seen += len(seg.items)
	}
	return outMsg{}, 0, false
}

// cut removes item i of segment si, its bytes and the capacity it held
// from the queue, and returns that capacity; observed says the coalescing
// strategy has seen it. A segment it empties leaves the queue, and is
// kept for reuse: nothing refers to the buffer of a queued segment
// outside the lock (prune copies the payloads it returns). The caller
// holds mu.
func (q *outQueue) cut(si, i int, observed bool) int {
	seg := q.segments[si]
	it := seg.items[i]
	size, held := it.size(), it.held()
	if i == 0 {
		// The oldest of its segment, as requests that time out in turn
		// are: its bytes stay where they are, unreferenced (the writer
		// writes the items, not the buffer), rather than the rest of the
		// segment moved up for each (about 10 µs a withdrawal in a full
		// lane, BenchmarkWithdrawInTurn); compact moves them once they
		// are more than the rest's.
		seg.items[0] = outItem{} // no reference left in the array
		seg.items = seg.items[1:]
		seg.compact()
	} else {
		// The bytes in the buffer: the whole message on a small lane, its
		// header on the large one.
		gap := it.end - it.start
		n := copy(seg.buf.B[it.start:], seg.buf.B[it.end:])
		seg.buf.B = seg.buf.B[:int(it.start)+n]
		for j := i + 1; j < len(seg.items); j++ {
			seg.items[j].start -= gap
			seg.items[j].end -= gap
		}
		seg.items = slices.Delete(seg.items, i, i+1)
	}
	seg.encoded -= size
	seg.bytes -= held
	q.messages--
	q.queued -= size
	q.reserved -= held
	if observed {
		q.observed--
	}
	if len(seg.items) > 0 {
		seg.shrink()
	}
	if it.expiresAt != 0 && (it.expiresAt == seg.soonest || it.expiresAt == q.soonest) {
		q.soonestStale = true // worked out when next read (freshSoonest)
	}
	if len(seg.items) == 0 {
		q.segments = slices.Delete(q.segments, si, si+1)
		recycle(seg) // another queue's from here on
	}
	return held
}

// compact moves a segment's messages to the start of its buffer when the
// bytes before the first, left there by withdrawals (cut), outnumber
// theirs: a segment holds at most twice its messages' bytes, and each
// byte is moved about once (each compaction moves fewer bytes than were
// left since the one before).
func (seg *batch) compact() {
	if len(seg.items) == 0 {
		return
	}
	left := seg.items[0].start
	if int(left) <= len(seg.buf.B)-int(left) {
		return
	}
	seg.buf.B = seg.buf.B[:copy(seg.buf.B, seg.buf.B[left:])]
	for j := range seg.items {
		seg.items[j].start -= left
		seg.items[j].end -= left
	}
}

// shrink gives a segment that withdrawals (cut) left mostly empty arrays
// of its size. Its buffer and items would keep the memory of the messages
// withdrawn, which no capacity counts any more, and a queue whose writer
// is stuck (a peer that stopped reading) could pile up such segments, one
// message left in each, as producers take the capacity given back. Each
// shrink copies fewer bytes than were withdrawn since the arrays were
// last sized.
func (seg *batch) shrink() {
	left := seg.items[0].start
	if live := len(seg.buf.B) - int(left); cap(seg.buf.B) > 4*live+shrinkSlack {
		b := make([]byte, live, 2*live)
		copy(b, seg.buf.B[left:])
		seg.buf.B = b
		for j := range seg.items {
			seg.items[j].start -= left
			seg.items[j].end -= left
		}
	}
	if cap(seg.items) > 4*len(seg.items)+shrinkSlack/outItemCost {
		seg.items = slices.Clone(seg.items)
	}
}

// shrinkSlack is how much more than four times what its messages use a
// segment's buffer (and, in items, its item array) may hold before a
// withdrawal shrinks it.
const shrinkSlack = 64 << 10

// retireIfEmpty makes the queue refuse messages with err, and reports
// true, when it holds nothing: no message queued or being written.
func (q *outQueue) retireIfEmpty(err error) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.messages > 0 || q.reserved > 0 || q.err != nil {
		return false
	}
	q.err = err
	return true
}

// unretire undoes retireIfEmpty(err).
func (q *outQueue) unretire(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == err {
		q.err = nil
	}
}

// refusing returns the error the queue refuses messages with, or nil.
func (q *outQueue) refusing() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// has reports whether a message is queued.
func (q *outQueue) has() bool {
	n, _ := q.pending()
	return n > 0
}

// shut makes the queue refuse messages with err from now on and returns
// whatever was still queued, for the caller to fail.
func (q *outQueue) shut(err error) []*batch {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
	return q.drain()
}

// drain takes every queued segment, for the caller to fail.
func (q *outQueue) drain() []*batch {
	var out []*batch
	for {
		seg, _ := q.take()
		if seg == nil {
			return out
		}
		out = append(out, seg)
	}
}
