package transport

import (
	"io"
	"sync"
	"time"
)

// A message's deadline on this node is when its frame arrived plus the
// time its sender had left as it wrote it (wire.Header.TTL). "Arrived"
// was when the reader took the frame from the socket — but while the
// reader waits for inbound capacity (OverloadPause), the frames behind
// the one it waits on sit in the socket's receive queue, and under
// load they are there for as long as the pause lasts: seconds, when a
// disk stalls. Dated when read, they reached their handlers with their
// whole TTL, long after their callers gave up (the simulator saw
// deadlines 3 to 5 s late with a 1 s timeout), and the handlers did
// that dead work first: a node that fell behind could not catch up.
//
// So while it waits, the reader samples the receive queue's depth
// (arrivalSampleEvery), each sample marking how far into the stream
// the bytes had arrived by then. A frame whose first byte lies within a
// mark is dated by that mark: late by at most a sampling interval,
// never early. Over TLS the bytes are counted below TLS, where the
// queue's depth counts them, and a read stops at the end of a record
// while marks remain (prefixConn): a frame is dated as if it had come
// with the end of its record, later than it did, never earlier.
//
// The large lane's reader is held up by more than such pauses: by a
// ReaderHandler that reads a message's part slowly (feed), by an Inline
// handler, by a grant written behind a response part to a slow caller.
// The large messages begun behind it wait in the receive queue as long,
// and a request that waited so past its deadline has been given up by its
// caller as surely: while held (holdStarts, holdEnds) that reader samples
// its receive queue likewise, from a timer, and a message's deadline
// starts when its FrameLargeBegin arrived (readLargeBegin). An Inline
// handler holds up the urgent and small lanes' readers as well: each
// samples its receive queue so from the first Inline handler a frame runs
// until it is done with the frame (runInline, handleBatch).
//
// Bytes that wait in the sender's send queue (its window closed by the
// pause) are not seen here: the sender bounds them instead
// (SocketConfig.NotSentLowat), keeping the rest in its queue, where
// their deadlines count.

// arrivalSampleEvery is how often a reader paused for capacity samples
// its socket's receive queue.
const arrivalSampleEvery = 5 * time.Millisecond

// maxArrivalMarks bounds the marks a connection keeps; past it the last
// is moved on, so later bytes are dated later, never earlier.
const maxArrivalMarks = 64

// arrivals dates a connection's bytes that waited in its socket's
// receive queue. Owned by the connection's reader.
type arrivals struct {
	// read is how many bytes the connection's buffered reader took from
	// the connection: the stream offset of the next byte it would take.
	read int64
	// counted says read counts the socket's bytes; without that (a
	// wrapper it cannot see below), a pause takes no marks (waitRoom).
	counted bool
	// marks are ascending in end and in at: the stream's bytes before
	// end had arrived by at (monoNanos).
	marks []arrivalMark
}

type arrivalMark struct{ end, at int64 }

// mark records that queued bytes wait in the socket's receive queue at
// now, past those read.
func (a *arrivals) mark(queued int, now int64) {
	end := a.read + int64(queued)
	n := len(a.marks)
	switch {
	case n > 0 && a.marks[n-1].end >= end:
		return // nothing arrived since the last mark
	case n == maxArrivalMarks:
		a.marks[n-1] = arrivalMark{end: end, at: now}
		return
	}
	a.marks = append(a.marks, arrivalMark{end: end, at: now})
}

// arrivedBy returns the latest moment by which the byte at stream offset
// x had arrived, if a mark says, and forgets the marks before it: the
// reader never goes back.
func (a *arrivals) arrivedBy(x int64) (int64, bool) {
	i := 0
	for i < len(a.marks) && a.marks[i].end <= x {
		i++
	}
	if i > 0 {
		a.marks = append(a.marks[:0], a.marks[i:]...)
	}
	if len(a.marks) == 0 {
		return 0, false
	}
	return a.marks[0].at, true
}

// countingReader counts the bytes read through it into *n.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	*c.n += int64(n)
	return n, err
}

// arrival returns when the frame being read arrived: now, or, if it
// waited in the socket's receive queue while reading paused, the mark
// that saw it there.
func (ic *inConn) arrival() int64 {
	now := monoNanos()
	if len(ic.arrivals.marks) == 0 {
		return now
	}
	if at, ok := ic.arrivals.arrivedBy(ic.frameAt); ok && at < now {
		return at
	}
	return now
}

// samplePaused samples the socket's receive queue while reading pauses:
// a mark dating the bytes that wait there, and a reading of its depth.
// No read measures that depth until reading resumes, and none ever if the
// connection ends first (its peer gave up on it, or left): unsampled, a
// pause — the backlog the receive-queue peak is for — showed the depth
// read before it at every collection while it lasted, and nothing at all
// when it ended with its connection.
func (ic *inConn) samplePaused() {
	q, err := ic.probe.RecvQueue()
	if err != nil {
		return
	}
	if ic.arrivals.counted {
		ic.arrivals.mark(q, monoNanos())
	}
	if ic.t.measuring() {
		ic.recordRecvQueue(q)
	}
}

// heldSampler samples a reader's receive queue while the reader is held
// up other than by a pause for capacity (see arrivals), on the large lane
// or by an Inline handler on the others: from a timer's goroutine, every
// arrivalSampleEvery, the reader's arrivals being left to it meanwhile
// (on), for the reader reads none of its bytes then. The first sample
// comes arrivalSampleEvery into the hold, so a short one costs no reading
// of the queue.
type heldSampler struct {
	mu    sync.Mutex
	on    bool // the reader is held: the timer's goroutine marks
	timer *time.Timer
}

// holdStarts says the reader is about to be held up, reading nothing
// until holdEnds: the bytes that arrive meanwhile are dated by samples.
func (ic *inConn) holdStarts() {
	if ic.probe == nil || !ic.arrivals.counted {
		return
	}
	h := &ic.held
	h.mu.Lock()
	h.on = true
	if h.timer == nil {
		h.timer = time.AfterFunc(arrivalSampleEvery, ic.sampleHeld)
	} else {
		h.timer.Reset(arrivalSampleEvery)
	}
	h.mu.Unlock()
}

// holdEnds says the reader reads on; the marks taken are its own again.
func (ic *inConn) holdEnds() {
	if ic.probe == nil || !ic.arrivals.counted {
		return
	}
	h := &ic.held
	h.mu.Lock()
	h.on = false
	h.timer.Stop()
	h.mu.Unlock()
}

// sampleHeld marks the bytes that wait in the socket's receive queue
// while the reader is held, and samples again later while it still is.
func (ic *inConn) sampleHeld() {
	h := &ic.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on {
		return // ended meanwhile
	}
	if q, err := ic.probe.RecvQueue(); err == nil {
		ic.arrivals.mark(q, monoNanos())
	}
	h.timer.Reset(arrivalSampleEvery)
}
