package transporttest

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// pipeBuffer is the most bytes one direction of a connection holds written
// and unread, as a socket's send and receive buffers do: a writer beyond
// it waits for the reader.
const pipeBuffer = 512 << 10

// memConn is one end of an in-memory connection: buffered both ways (unlike
// net.Pipe, a write returns once its bytes are buffered), with deadlines,
// and with the network's faults applied to it (see Network). Safe for
// concurrent use, as a net.Conn must be.
type memConn struct {
	in, out       *stream // in: what this end reads; out: what it writes
	local, remote memAddr
	readDeadline  deadline
	writeDeadline deadline
	closeOnce     sync.Once
	onClose       func(*memConn) // the network forgets the conn
	// conn is the same for both ends: it tells one connection from
	// another when only one of its ends is still open.
	conn *stream
}

var _ net.Conn = (*memConn)(nil)

// newPipe returns the two ends of a connection between addresses a and b
// whose bytes cross lk.
func newPipe(a, b memAddr, lk *link) (*memConn, *memConn) {
	ab, ba := newStream(lk), newStream(lk)
	ca := &memConn{in: ba, out: ab, local: a, remote: b, conn: ab,
		readDeadline: makeDeadline(), writeDeadline: makeDeadline()}
	cb := &memConn{in: ab, out: ba, local: b, remote: a, conn: ab,
		readDeadline: makeDeadline(), writeDeadline: makeDeadline()}
	return ca, cb
}

func (c *memConn) Read(b []byte) (int, error) {
	n, err := c.in.read(b, &c.readDeadline)
	if err != nil && err != io.EOF {
		err = c.opError("read", err)
	}
	return n, err
}

func (c *memConn) Write(b []byte) (int, error) {
	n, err := c.out.write(b, &c.writeDeadline)
	if err != nil {
		err = c.opError("write", err)
	}
	return n, err
}

// Close ends both directions: the peer reads what was written, then EOF;
// its writes fail from now on. This end's reads and writes fail with
// net.ErrClosed, as any Go net.Conn's do after Close, a reset or not.
func (c *memConn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.out.closeWriter()
		c.in.closeReader()
		if c.onClose != nil {
			c.onClose(c)
		}
	})
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	return nil
}

// CloseWrite ends this end's direction, as shutdown(SHUT_WR) ends a TCP
// connection's: the peer reads what was written, then io.EOF (across a
// partition, once healed, as the bytes); this end still reads what the
// peer writes, and its own later writes fail with EPIPE. After Close it
// fails as Close does a second time.
func (c *memConn) CloseWrite() error {
	if !c.out.shutWriter() {
		return c.opError("close", net.ErrClosed)
	}
	return nil
}

// reset breaks the connection at both ends, as a TCP reset does: what was
// buffered is lost and every read and write fails with ECONNRESET.
func (c *memConn) reset() {
	c.in.reset()
	c.out.reset()
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

func (c *memConn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.set(t)
	return nil
}

func (c *memConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.set(t)
	return nil
}

func (c *memConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: networkName, Source: c.local, Addr: c.remote, Err: err}
}

// stream is one direction of a memConn: a bounded queue of written bytes,
// each chunk readable from its arrival time on (now, or later under a
// delay), and only while its link is not partitioned.
type stream struct {
	link *link

	mu       sync.Mutex
	chunks   []chunk
	buffered int
	// writerClosed: the writing end closed (reads drain, then EOF);
	// readerClosed: the reading end closed (writes fail); broken: reset.
	writerClosed, readerClosed, broken bool
	// writerShut: writerClosed by CloseWrite, not Close: writes fail
	// with EPIPE, not net.ErrClosed.
	writerShut bool
	changed    chan struct{} // closed and replaced on every change
}

type chunk struct {
	data    []byte
	arrives time.Time // zero: at once
}

func newStream(lk *link) *stream { return &stream{link: lk, changed: make(chan struct{})} }

// wake tells the stream's waiters that something changed; s.mu held.
func (s *stream) wake() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// notify wakes the stream's waiters, for a change outside it (its link).
func (s *stream) notify() {
	s.mu.Lock()
	s.wake()
	s.mu.Unlock()
}

func (s *stream) read(b []byte, dl *deadline) (int, error) {
	for {
		s.mu.Lock()
		switch {
		case s.readerClosed: // before broken: this end's Close is what counts
			s.mu.Unlock()
			return 0, net.ErrClosed
		case s.broken:
			s.mu.Unlock()
			return 0, syscall.ECONNRESET
		case isClosed(dl.wait()):
			s.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		case len(b) == 0:
			s.mu.Unlock()
			return 0, nil
		}
		var wait time.Duration
		partitioned := s.link.partitioned.Load() // nothing arrives, not even the end
		if len(s.chunks) > 0 && !partitioned {
			now := time.Now()
			n := 0
			for n < len(b) && len(s.chunks) > 0 {
				c := &s.chunks[0]
				if !c.arrives.IsZero() && c.arrives.After(now) {
					wait = c.arrives.Sub(now)
					break
				}
				m := copy(b[n:], c.data)
				n += m
				c.data = c.data[m:]
				if len(c.data) == 0 {
					s.chunks[0] = chunk{}
					s.chunks = s.chunks[1:]
				}
			}
			if n > 0 {
				s.buffered -= n
				s.wake() // room for writers
				s.mu.Unlock()
				return n, nil
			}
		} else if len(s.chunks) == 0 && s.writerClosed && !partitioned {
			s.mu.Unlock()
			return 0, io.EOF
		}
		changed := s.changed
		s.mu.Unlock()
		var timer *time.Timer
		var arrival <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			arrival = timer.C
		}
		select {
		case <-changed:
		case <-dl.wait():
		case <-arrival:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (s *stream) write(b []byte, dl *deadline) (int, error) {
	written := 0
	for {
		s.mu.Lock()
		switch {
		case s.writerClosed && !s.writerShut: // before broken, as in read
			s.mu.Unlock()
			return written, net.ErrClosed
		case s.broken:
			s.mu.Unlock()
			return written, syscall.ECONNRESET
		case s.writerClosed:
			s.mu.Unlock()
			return written, syscall.EPIPE
		case s.readerClosed && !s.link.partitioned.Load():
			// Across a partition the reader's close is not known yet:
			// the bytes are buffered as any others, until Heal.
			s.mu.Unlock()
			return written, syscall.EPIPE
		case len(b) == 0:
			s.mu.Unlock()
			return written, nil
		case isClosed(dl.wait()):
			s.mu.Unlock()
			return written, os.ErrDeadlineExceeded
		}
		if room := pipeBuffer - s.buffered; room > 0 {
			n := min(room, len(b))
			var arrives time.Time
			if d := s.link.delay.Load(); d > 0 {
				arrives = time.Now().Add(time.Duration(d))
			}
			if last := len(s.chunks) - 1; last >= 0 && arrives.IsZero() && s.chunks[last].arrives.IsZero() {
				s.chunks[last].data = append(s.chunks[last].data, b[:n]...)
			} else {
				s.chunks = append(s.chunks, chunk{data: append([]byte(nil), b[:n]...), arrives: arrives})
			}
			s.buffered += n
			written += n
			b = b[n:]
			s.wake()
			s.mu.Unlock()
			if len(b) == 0 {
				return written, nil // whatever the reader does next
			}
			continue
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-dl.wait():
		}
	}
}

func (s *stream) closeWriter() {
	s.mu.Lock()
	s.writerClosed, s.writerShut = true, false
	s.wake()
	s.mu.Unlock()
}

// shutWriter ends the stream for CloseWrite; it reports false if the
// writing end was closed by Close already.
func (s *stream) shutWriter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writerClosed && !s.writerShut {
		return false
	}
	s.writerClosed, s.writerShut = true, true
	s.wake()
	return true
}

func (s *stream) closeReader() {
	s.mu.Lock()
	s.readerClosed = true
	s.chunks, s.buffered = nil, 0
	s.wake()
	s.mu.Unlock()
}

func (s *stream) reset() {
	s.mu.Lock()
	s.broken = true
	s.chunks, s.buffered = nil, 0
	s.wake()
	s.mu.Unlock()
}

// deadline is a channel closed when a deadline passes, as net.Pipe keeps
// one.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	expiry chan struct{} // closed once the deadline has passed
}

func makeDeadline() deadline { return deadline{expiry: make(chan struct{})} }

// set moves the deadline to t; the zero time means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.expiry // the timer fired: wait until it has closed expiry
	}
	d.timer = nil
	passed := isClosed(d.expiry)
	if t.IsZero() {
		if passed {
			d.expiry = make(chan struct{})
		}
		return
	}
	if wait := time.Until(t); wait > 0 {
		if passed {
			d.expiry = make(chan struct{})
		}
		expiry := d.expiry
		d.timer = time.AfterFunc(wait, func() { close(expiry) })
		return
	}
	if !passed {
		close(d.expiry)
	}
}

// wait returns a channel closed once the deadline has passed.
func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expiry
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
