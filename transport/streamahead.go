package transport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtaci/smux"
)

// A stream in the peer's session is read by a goroutine of its own, its
// read-ahead, and Read takes the bytes from the read-ahead's buffer. Two
// things about smux (v1.5.56 to v1.5.58) make that so:
//
//   - smux's Write, waiting for a window update that a closed stream never
//     sends, does not watch for the peer's close (its FIN), which only a
//     reader sees, after every byte before it. A Write of more than the
//     window to a peer whose handler had returned waited for ever. The
//     read-ahead reads up to the close and then closes this side, which
//     ends the waiting Write at once; a broken session's error ends it
//     too, rather than the session's keep-alive later.
//   - smux sends the window update for bytes read within the read deadline
//     of the Read that took them, and drops it once that deadline passed:
//     a Read whose deadline had passed (a caller polling for what has
//     arrived) left the peer's writer waiting for good. The read-ahead
//     reads without a deadline, and the caller's deadline applies to
//     Read's wait for the buffer instead.
//
// The buffer starts at aheadBase and, while full, doubles up to the
// stream's window (StreamConfig.StreamBuffer) as far as the peer's
// read-ahead allowance (aheadAllowance) goes; an emptied buffer that grew
// shrinks back. So every stream can always read aheadBase bytes, whatever
// the others hold, and the peer's close behind more unread bytes than the
// buffer holds is seen once Read takes some.

// aheadBase is a read-ahead buffer's size to begin with, and the most it
// holds without the peer's allowance.
const aheadBase = 32 << 10

// aheadAllowance is how far a peer's session streams' read-ahead buffers,
// both ways, have grown past aheadBase together: at most a session's
// buffer (StreamConfig.SessionBuffer).
type aheadAllowance struct{ used atomic.Int64 }

// take reserves n bytes of limit and reports whether it could.
func (a *aheadAllowance) take(n int, limit int64) bool {
	for {
		used := a.used.Load()
		if used+int64(n) > limit {
			return false
		}
		if a.used.CompareAndSwap(used, used+int64(n)) {
			return true
		}
	}
}

func (a *aheadAllowance) release(n int) { a.used.Add(-int64(n)) }

// errSessionEnded is how a session stream ends when its session closed
// under it (the peer moved, the transport closed, smux's keepalive gave
// up): cut short, not io.ErrClosedPipe, which smux gives then, and which
// says to the caller that it closed the stream itself.
var errSessionEnded = fmt.Errorf("transport: the stream's session closed: %w", io.ErrUnexpectedEOF)

// chanClosed reports whether ch is closed.
func chanClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// errPeerClosed is a Write's error on a session stream its peer closed,
// the error a TCP connection gives.
var errPeerClosed = fmt.Errorf("transport: the peer closed the stream: %w", syscall.ECONNRESET)

// startReadAhead starts reading session stream s ahead of Read, into a
// buffer of at most window bytes, grown past aheadBase within limit bytes
// of allowance; drain is its session's.
func (s *Stream) startReadAhead(allowance *aheadAllowance, limit int64, window int, drain *sessionDrain) {
	s.ahead = &readAhead{
		buf: make([]byte, min(aheadBase, window)), allowance: allowance, limit: limit, window: window,
		changed: make(chan struct{}), room: make(chan struct{}, 1), drain: drain,
	}
	waited := drain != nil && drain.join()
	go s.readAheadLoop(s.ahead, waited)
}

// readAheadLoop reads s into ra until the stream ends, or is closed while
// its buffer is full; waited says its session's drain waits for it.
func (s *Stream) readAheadLoop(ra *readAhead, waited bool) {
	if waited {
		defer ra.drain.leave()
	}
	defer ra.stop()
	die := s.s.(*smux.Stream).GetDieCh() // closed with the stream, and with its session
	var broken <-chan struct{}
	if ra.drain != nil {
		broken = ra.drain.broken
	}
	for {
		ra.mu.Lock()
		if chanClosed(broken) {
			// The session's connection ended: no more bytes come, and
			// those smux holds go when the session closes, next. They
			// are taken, past the buffer's bounds: smux held them.
			ra.unbounded = true
		}
		ra.arrange()
		free := ra.buf[ra.end:]
		ra.mu.Unlock()
		if len(free) == 0 {
			select {
			case <-ra.room:
				continue
			case <-die:
				return
			case <-s.closed:
				continue // Close emptied the buffer first (readAhead.close)
			case <-broken:
				continue // grown now (unbounded)
			}
		}
		// Read alone writes free, past ra.end; the lock guards the indexes.
		// After Close what it reads is dropped: it reads on only to see the
		// peer's end (ended).
		n, err := s.s.Read(free)
		if n > 0 && err != nil && !errors.Is(err, io.EOF) && ra.drain != nil {
			// smux gave bytes, then failed to send the window update
			// after them: the session's socket can no longer be written.
			// The session is done, but what smux holds for the stream is
			// good (a peer that ended the stream sent it whole): taken
			// before the session closes.
			ra.drain.closeWhenDrained()
			err = nil
		}
		if err != nil && (!errors.Is(err, io.EOF) && chanClosed(die) || chanClosed(broken)) {
			// Its session closed (not this stream's Close: that drops err),
			// or its connection ended, before the peer's end came: that
			// one is io.EOF, whole, and the end marker before it ends Read.
			err = errSessionEnded
		}
		ra.mu.Lock()
		if !ra.closed {
			ra.end += n
			if err != nil {
				ra.err = err
			}
		}
		ra.signal()
		ra.mu.Unlock()
		if err != nil {
			s.ended(err)
			return
		}
	}
}

// ended closes a session stream whose read-ahead read its end: the peer's
// close (io.EOF), or its session's error, unless this side closed it or
// its session, which smux reads as an end too. That ends a Write waiting
// on it at once, and later Writes fail with peerErr. smux's Close then
// waits for its own close to be written, up to 30 s behind a congested
// session: in a goroutine of its own (startClose).
func (s *Stream) ended(err error) {
	select {
	case <-s.closed:
		// Closed by this side: an end marker still waiting for the
		// peer's window never gets it now (writeEnd).
		s.peerEnded.Store(true)
		_ = s.s.SetWriteDeadline(aLongTimeAgo)
		return
	case <-s.s.(*smux.Stream).GetDieCh():
		return
	default:
	}
	if s.ahead.drain != nil && chanClosed(s.ahead.drain.broken) {
		return // its session is closed next, as if already (closeWhenBroken)
	}
	if err == io.EOF {
		err = errPeerClosed
	} else {
		err = fmt.Errorf("transport: the stream's session failed: %w", err)
	}
	s.peerErr.Store(&err)
	s.startClose(false)
}

// peerError is the error that ended s from the peer's side (ended), or
// nil.
func (s *Stream) peerError() error {
	if p := s.peerErr.Load(); p != nil {
		return *p
	}
	return nil
}

// readAhead holds the bytes a session stream's read-ahead read, for Read.
type readAhead struct {
	allowance *aheadAllowance
	limit     int64 // the allowance's
	window    int

	drain *sessionDrain // its session's

	mu         sync.Mutex
	buf        []byte        // at most window; bytes [start, end) are unread
	held       int           // of the allowance, for buf past aheadBase
	unbounded  bool          // the session's connection ended: buf takes what smux holds
	start, end int           //
	err        error         // how the stream ended: io.EOF, the peer's close
	closed     bool          // Close was called: Read fails, and what is read is dropped
	stopped    bool          // the loop ended: no more bytes come (stop)
	deadline   time.Time     // the caller's read deadline
	changed    chan struct{} // closed, and replaced, when any of the above change
	room       chan struct{} // a Read took bytes
}

// arrange makes room in the buffer for the next read: it moves what is
// left to the front, doubles a full buffer up to the window as far as the
// allowance goes, and lets an emptied one that grew go for one of
// aheadBase, returning what it had of the allowance. mu held.
func (ra *readAhead) arrange() {
	switch {
	case ra.start == ra.end:
		ra.start, ra.end = 0, 0
		if len(ra.buf) > aheadBase {
			ra.allowance.release(ra.held)
			ra.held = 0
			ra.buf = make([]byte, aheadBase)
		}
	case ra.start > 0:
		ra.end = copy(ra.buf, ra.buf[ra.start:ra.end])
		ra.start = 0
	}
	if ra.end < len(ra.buf) {
		return
	}
	if ra.unbounded {
		// What smux holds for the stream, at most its window (and
		// together the session's buffer), now moves here.
		grown := make([]byte, 2*len(ra.buf))
		copy(grown, ra.buf[:ra.end])
		ra.buf = grown
		return
	}
	if len(ra.buf) >= ra.window {
		return
	}
	size := min(2*len(ra.buf), ra.window)
	if ra.allowance.take(size-len(ra.buf), ra.limit) {
		ra.held += size - len(ra.buf)
		grown := make([]byte, size)
		copy(grown, ra.buf[:ra.end])
		ra.buf = grown
	}
}

// stop ends the read-ahead when its loop ends. When the loop ended
// without reading the stream's end (its session was closed while the
// buffer was full: a stream Close closed has its error already), Read,
// once it took the bytes left, finds the stream cut short. The buffer,
// and what it has of the allowance, are let go once they hold no bytes
// for Read (letGo): the peer's close right behind its last bytes ends
// the loop with a buffer grown and full, and it stays so until Read takes
// them, as much memory as before.
func (ra *readAhead) stop() {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.stopped = true
	if ra.start == ra.end {
		ra.letGo()
	}
	if ra.err == nil {
		ra.err = errSessionEnded
		ra.signal()
	}
}

// letGo lets the buffer of a read-ahead that stopped go, with what it had
// of the allowance, once no bytes in it are left for Read. mu held.
func (ra *readAhead) letGo() {
	ra.allowance.release(ra.held)
	ra.held = 0
	ra.buf, ra.start, ra.end = nil, 0, 0
}

// close ends reading on a stream Close closed: a Read, one under way
// included, fails with io.ErrClosedPipe, as on a closed connection, and
// what was read ahead is dropped.
func (ra *readAhead) close() {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.closed = true
	ra.start, ra.end = 0, 0
	if ra.stopped {
		ra.letGo() // no loop arranges the buffer any more
	}
	ra.err = io.ErrClosedPipe
	ra.signal()
}

// signal wakes a Read waiting for a change. mu held.
func (ra *readAhead) signal() {
	close(ra.changed)
	ra.changed = make(chan struct{})
}

// setDeadline sets the caller's read deadline; a Read waiting sees it.
func (ra *readAhead) setDeadline(t time.Time) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.deadline = t
	ra.signal()
}

// read takes bytes read ahead into b, waiting for some within the
// caller's read deadline (os.ErrDeadlineExceeded once it passed, as a TCP
// connection's Read gives); once none are left, it returns how the stream
// ended.
func (ra *readAhead) read(b []byte) (int, error) {
	for {
		ra.mu.Lock()
		if ra.start < ra.end {
			n := copy(b, ra.buf[ra.start:ra.end])
			ra.start += n
			if ra.stopped && ra.start == ra.end {
				ra.letGo()
			}
			ra.mu.Unlock()
			select {
			case ra.room <- struct{}{}:
			default:
			}
			return n, nil
		}
		if ra.err != nil {
			err := ra.err
			ra.mu.Unlock()
			return 0, err
		}
		deadline, changed := ra.deadline, ra.changed
		ra.mu.Unlock()
		if deadline.IsZero() {
			<-changed
			continue
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		timer := time.NewTimer(wait)
		select {
		case <-changed:
			timer.Stop()
		case <-timer.C:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// sessionDrain lets the read-aheads of a stream session's streams take
// the bytes smux holds for them once the session's connection ended,
// before the session is closed (closeWhenBroken, serveStreams): smux's
// Session.Close throws away what its streams hold unread (v1.5.58), and
// a read-ahead whose buffer was full gave up at the close. A stream its
// peer had ended cleanly just before its connection ended — the peer's
// node closed once its handler returned, say — read cut short, although
// every byte and the end marker had arrived.
type sessionDrain struct {
	t       *Transport
	session *smux.Session
	broken  chan struct{} // closed once the session's connection ended
	closing sync.Once     // closeWhenDrained's

	mu      sync.Mutex
	ended   bool          // broken is closed
	until   time.Time     // when wait gives up, once ended
	loops   int           // read-aheads running that wait sees to
	drained chan struct{} // closed once ended and no loop runs
}

// newSessionDrain returns session's drain, found by drainOf until forget.
func (t *Transport) newSessionDrain(session *smux.Session) *sessionDrain {
	d := &sessionDrain{t: t, session: session, broken: make(chan struct{}), drained: make(chan struct{})}
	t.sessionDrains.Store(session, d)
	return d
}

// drainOf returns session's drain, nil if it has none (it ended).
func (t *Transport) drainOf(session *smux.Session) *sessionDrain {
	if session == nil {
		return nil
	}
	d, _ := t.sessionDrains.Load(session)
	dr, _ := d.(*sessionDrain)
	return dr
}

// forget ends d's entry (drainOf) once its session ended.
func (d *sessionDrain) forget() { d.t.sessionDrains.CompareAndDelete(d.session, d) }

// join counts a read-ahead starting, and reports whether wait sees to it:
// not once the connection ended.
func (d *sessionDrain) join() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		return false
	}
	d.loops++
	return true
}

// leave counts a read-ahead that joined ending.
func (d *sessionDrain) leave() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loops--; d.loops == 0 && d.ended {
		close(d.drained)
	}
}

// wait tells the read-aheads that session's connection ended, and waits
// until they have taken what smux holds and ended, for lingerTimeout at
// most from the first call: each ends as soon as smux has no more bytes
// for it, as its connection gives none. Every call waits, so that none
// closes the session under another's drain. A session closed already has
// nothing left, and once the transport closes nothing is kept: a session
// that openOn let go is no longer its peer's for Close to close.
func (d *sessionDrain) wait(session *smux.Session) {
	d.mu.Lock()
	if !d.ended {
		d.ended = true
		d.until = time.Now().Add(lingerTimeout)
		close(d.broken)
		if d.loops == 0 {
			close(d.drained)
		}
	}
	until := d.until
	d.mu.Unlock()
	if session.IsClosed() {
		return
	}
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	select {
	case <-d.drained:
	case <-timer.C:
	case <-d.t.closed:
	}
}

// closeWhenDrained closes d's session once its read-aheads took what smux
// holds (wait), in a goroutine that ends within lingerTimeout, for a
// failure that ends no AcceptStream — closeWhenBroken and serveStreams see
// to the others: a write on its socket failed, found by a stream's open
// (Transport.openOn) or by a read's window update (readAheadLoop).
func (d *sessionDrain) closeWhenDrained() {
	d.closing.Do(func() {
		go func() {
			d.wait(d.session)
			d.session.Close()
		}()
	})
}
