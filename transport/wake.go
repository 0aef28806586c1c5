package transport

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/routing"
)

// Waking the readers of the urgent and small lanes while large parts keep
// every processor busy.
//
// A reader waiting for its socket is parked in the Go runtime's network
// poller, and the runtime polls the network only when a processor runs out
// of work, and otherwise every 10 ms from its monitor thread. A bulk
// transfer — a large lane's writer and, with the peer in the same process
// or on a few cores, its reader — hardly runs out of work: a request that
// has arrived on a small lane then waits unread for up to those 10 ms,
// and so does its response on the way back. Yielding after each part
// (yieldAfterPart) gives runnable goroutines a processor, but a parked
// reader is not runnable until the network is polled.
//
// So the process keeps an epoll set of its own (readWaker, Linux only)
// holding the sockets of every transport's urgent and small lanes, both
// directions, edge-triggered. After each large part the goroutine that
// moved it asks that set, without waiting, which of them have received
// bytes, and wakes their readers: a read deadline in the past makes the
// runtime ready a parked reader at once, without a poll of the network.
// wakeConn, under the lane's TLS if any, turns that deadline back into a
// read: a timeout that a wake-up caused, before the deadline its reader
// asked for, is not an error.

// wakeConn is the TCP socket of an urgent or small lane, as its reader
// reads it: a timeout after a wake-up by readWaker, and before the read
// deadline last set through it (or with none set), is that wake-up, and
// the read goes on. Until watched it reads as the socket does.
type wakeConn struct {
	*net.TCPConn
	waker *readWaker
	id    uint64 // in waker, under its lock; 0 until watched, unwatched once closed
	// reading is set while the reader is in a read, which is when a
	// wake-up can help.
	reading atomic.Bool

	mu sync.Mutex // orders wake-ups, the reader's deadlines and their restoring
	// deadline is the read deadline asked for; zero: none.
	deadline time.Time
	// woken is set with the past deadline of a wake-up, and cleared once
	// a timeout took it.
	woken bool
}

// watched reports whether lane's readers are woken after large parts.
func watched(lane routing.Lane) bool { return lane == routing.Urgent || lane == routing.Small }

// wrapForWaking returns conn as a wakeConn, when the transport wakes
// readers and conn is a TCP socket; otherwise conn.
func (t *Transport) wrapForWaking(conn net.Conn) net.Conn {
	if tcp, ok := conn.(*net.TCPConn); ok && t.waker != nil {
		return &wakeConn{TCPConn: tcp, waker: t.waker}
	}
	return conn
}

// watchForWaking adds conn's socket to the readers woken after large
// parts, if conn has a wakeConn under it (see wrapForWaking).
func (t *Transport) watchForWaking(conn net.Conn) {
	if wc, ok := socketOf(conn).(*wakeConn); ok {
		t.waker.watch(wc)
	}
}

// socketOf returns the connection under conn's TLS and prefixConn layers.
func socketOf(conn net.Conn) net.Conn {
	for {
		switch c := conn.(type) {
		case *tls.Conn:
			conn = c.NetConn()
		case *prefixConn:
			conn = c.Conn
		default:
			return conn
		}
	}
}

func (c *wakeConn) Read(b []byte) (int, error) {
	for {
		c.reading.Store(true)
		n, err := c.TCPConn.Read(b)
		c.reading.Store(false)
		if err == nil || !isTimeout(err) || !c.restoreDeadline() {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// restoreDeadline reports whether a timeout was a wake-up, before the
// reader's own deadline, and if so sets that deadline again.
func (c *wakeConn) restoreDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.woken {
		return false
	}
	c.woken = false
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return false
	}
	_ = c.TCPConn.SetReadDeadline(c.deadline)
	return true
}

// wake makes a reader parked in a read of c return to it at once.
func (c *wakeConn) wake() {
	if c.reading.Load() {
		c.mu.Lock()
		c.woken = true
		_ = c.TCPConn.SetReadDeadline(aLongTimeAgo)
		c.mu.Unlock()
	}
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

func (c *wakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// woken stays: a wake-up's timeout may be on its way to the reader
	// (restoreDeadline still holds it to this deadline).
	c.deadline = t
	return c.TCPConn.SetReadDeadline(t)
}

func (c *wakeConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.TCPConn.SetWriteDeadline(t)
}

func (c *wakeConn) Close() error {
	c.waker.unwatch(c)
	return c.TCPConn.Close()
}

// yieldAfterPart lets other goroutines run after a large message's part
// was written or read, and first wakes the urgent and small lanes' readers
// that have bytes to read (see readWaker). A lane's writer and reader run
// until they block, and a bulk transfer hardly blocks: with the peer in
// the same process, or a few cores, the goroutines of the urgent and small
// lanes — a reader woken by a request, a handler, a writer — then wait for
// a processor, for up to the runtime's 10 ms time slice. A yield per part
// (256 KiB, around 100 µs of copying here) shortens that wait: the
// docs/performance.md's "A yield after each large part" has the measurements.
func (w *readWaker) yieldAfterPart() {
	w.poll()
	runtime.Gosched()
}
