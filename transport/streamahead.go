package transport

import (
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/xtaci/smux"

	"github.com/internode/internode/internal/limit"
)

// A stream in the peer's session learns that the peer closed it only by
// reading: smux's Write, waiting for a window update that a closed stream
// never sends, does not watch for the peer's close (its FIN), which only
// its Read sees, after every byte before it. A Write of more than the
// window to a peer whose handler had returned waited for ever.
//
// So a Write (or CloseWrite) on a session stream that has waited
// peerCheckInterval, with no Read under way, starts a goroutine that reads
// the stream ahead of Read, into a buffer of at most the stream's window
// (StreamConfig.StreamBuffer), and from then on Read takes the bytes from
// that buffer. The bytes it holds, and the read under way, are taken from
// the peer's inbound account; while that has no room it waits. It sees
// the peer's close once the bytes before it are read — all of them when
// the peer wrote no more than the window without reading and returned —
// and closes this side, which ends the waiting Write at once. It reads
// until the stream ends, as its only reader, and without a read deadline
// of its own: smux sends the window update for bytes read within the
// deadline of the Read that took them, and drops it once that passed, so
// a reader that woke on a deadline could leave the peer's writer waiting
// for good. The caller's read deadline applies to Read's wait for the
// buffer instead.

// errPeerClosed is a Write's error on a session stream its peer closed,
// the error a TCP connection gives.
var errPeerClosed = fmt.Errorf("transport: the peer closed the stream: %w", syscall.ECONNRESET)

// peerCheckInterval is how long a session stream's Write waits before it
// has the stream read ahead, and then how often it tries again while a
// Read is under way; and how often the read-ahead asks the inbound account
// again while that has no room.
const peerCheckInterval = 200 * time.Millisecond

// watchPeer starts the wait after which a Write or CloseWrite on a session
// stream has the stream read ahead, until unwatch. writeMu held.
func (s *Stream) watchPeer() {
	s.writing.Store(true)
	s.watch.Reset(peerCheckInterval)
}

// unwatch ends watchPeer. writeMu held.
func (s *Stream) unwatch() {
	s.writing.Store(false)
	s.watch.Stop()
}

// checkPeer runs on watchPeer's timer: it starts the read-ahead, or tries
// again later while the Write still waits.
func (s *Stream) checkPeer() {
	if !s.writing.Load() || s.startReadAhead() {
		return
	}
	if s.writing.Load() {
		s.watch.Reset(peerCheckInterval)
	}
}

// startReadAhead starts the goroutine reading s ahead, unless it runs
// already, and reports whether it runs. It does not while a Read is under
// way: that Read sees the peer's close itself.
func (s *Stream) startReadAhead() bool {
	if !s.readMu.TryLock() {
		return false
	}
	defer s.readMu.Unlock()
	if s.ahead != nil {
		return true
	}
	s.deadlineMu.Lock()
	defer s.deadlineMu.Unlock()
	ra := &readAhead{
		buf: make([]byte, min(aheadRead, s.window)), account: s.account, deadline: s.readDeadline,
		changed: make(chan struct{}), room: make(chan struct{}, 1),
	}
	_ = s.s.SetReadDeadline(time.Time{})
	s.ahead = ra
	go s.readAheadLoop(ra)
	return true
}

// readAheadLoop reads s into ra until the stream ends. The bytes it holds
// are taken from the peer's inbound account, each read's worth before the
// read, and given back as Read takes them; while the account has no room
// it tries again every peerCheckInterval.
func (s *Stream) readAheadLoop(ra *readAhead) {
	defer ra.stop()
	die := s.s.(*smux.Stream).GetDieCh() // closed with the stream, and with its session
	for {
		ra.mu.Lock()
		ra.arrange(s.window)
		free := ra.buf[ra.end:]
		ra.mu.Unlock()
		want := min(len(free), aheadRead)
		if want == 0 || !s.account.TryTake(int64(want)) {
			var retry <-chan time.Time
			if want > 0 { // no room in the account
				retry = time.After(peerCheckInterval)
			}
			select {
			case <-ra.room:
			case <-retry:
			case <-die:
				return
			case <-s.closed:
				return
			}
			continue
		}
		// Read alone writes free, past ra.end; the lock guards the indexes.
		n, err := s.s.Read(free[:want])
		s.account.Release(int64(want - n))
		ra.mu.Lock()
		ra.end += n
		if err != nil {
			ra.err = err
		}
		ra.signal()
		ra.mu.Unlock()
		if err == io.EOF {
			s.closeForPeer()
		}
		if err != nil {
			return
		}
	}
}

// aheadRead is the most a read-ahead reads, and takes from the inbound
// account, at a time, and the size its buffer starts at.
const aheadRead = 32 << 10

// arrange makes room in the buffer for the next read: it moves what is
// left to the front, doubles a full buffer up to most, and lets an emptied
// one that grew go for one of aheadRead, so that the memory held follows
// the bytes the inbound account counts. mu held.
func (ra *readAhead) arrange(most int) {
	switch {
	case ra.start == ra.end:
		ra.start, ra.end = 0, 0
		if len(ra.buf) > aheadRead {
			ra.buf = make([]byte, aheadRead)
		}
	case ra.start > 0:
		ra.end = copy(ra.buf, ra.buf[ra.start:ra.end])
		ra.start = 0
	}
	if ra.end == len(ra.buf) && len(ra.buf) < most {
		grown := make([]byte, min(2*len(ra.buf), most))
		copy(grown, ra.buf[:ra.end])
		ra.buf = grown
	}
}

// closeForPeer closes a session stream whose end was read: the peer closed
// it (smux's FIN), unless this side or its session did, which smux reads
// as an end too. That ends a Write waiting on it at once. smux's Close
// then waits for its own close to be written, up to 30 s behind a
// congested session: not with Read's lock held.
func (s *Stream) closeForPeer() {
	select {
	case <-s.closed:
		return
	case <-s.s.(*smux.Stream).GetDieCh():
		return
	default:
	}
	s.peerClosed.Store(true)
	go s.s.Close()
}

// readAhead holds the bytes a session stream's read-ahead goroutine read,
// for Read.
type readAhead struct {
	account *limit.Account // holds the unread bytes while counted

	mu         sync.Mutex
	buf        []byte // at most the stream's window; bytes [start, end) are unread
	start, end int
	uncounted  bool          // the loop ended and gave the unread bytes back
	err        error         // how the stream ended: io.EOF, its close
	deadline   time.Time     // the caller's read deadline
	changed    chan struct{} // closed, and replaced, when any of the above change
	room       chan struct{} // a Read took bytes
}

// stop ends the read-ahead when its loop ends: it gives the unread bytes
// back to the account (Read may still take them), and a loop that ended
// without reading the stream's end, because the stream or its session was
// closed while it waited for room, ends Read's wait too.
func (ra *readAhead) stop() {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.account.Release(int64(ra.end - ra.start))
	ra.uncounted = true
	if ra.err == nil {
		ra.err = io.ErrClosedPipe
		ra.signal()
	}
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
// caller's read deadline (smux.ErrTimeout once it passed, as a session
// stream's Read gives); once none are left, it returns how the stream
// ended.
func (ra *readAhead) read(b []byte) (int, error) {
	for {
		ra.mu.Lock()
		if ra.start < ra.end {
			n := copy(b, ra.buf[ra.start:ra.end])
			ra.start += n
			if !ra.uncounted {
				ra.account.Release(int64(n))
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
			return 0, smux.ErrTimeout
		}
		timer := time.NewTimer(wait)
		select {
		case <-changed:
			timer.Stop()
		case <-timer.C:
			return 0, smux.ErrTimeout
		}
	}
}
