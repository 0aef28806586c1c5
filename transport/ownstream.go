package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A StreamOption says how OpenStream opens a stream.
type StreamOption func(*streamOptions)

type streamOptions struct {
	ownConnection bool
}

// OwnConnection opens the stream on a TCP connection of its own, dialled
// for it and closed with it, instead of on the peer's shared stream
// session. A Write goes from the caller's goroutine straight to the
// socket, and a Read from the socket to the caller, with none of the
// session's goroutines between them: for a long-lived stream whose
// messages' latency counts, such as a replication pipeline, where the
// session's hand-offs cost several goroutine wake-ups per round trip. It
// costs a dial and handshake per stream, a socket per open stream (within
// the peer's Config.Security.MaxConnsPerPeer) and a read buffer on each
// side (ownStreamBuffer, taken from the acceptor's inbound limits); flow
// control is TCP's, liveness TCP keep-alive's and, while bytes either end
// wrote are unacknowledged, TCP_USER_TIMEOUT's: Timeouts.Write, after
// which Read and Write fail. The bytes on it are those
// of a stream in a session (see "Streams" in package wire).
func OwnConnection() StreamOption {
	return func(o *streamOptions) { o.ownConnection = true }
}

// ownStreamBuffer is the read buffer of a stream on a connection of its
// own: the chunk headers and small chunks are read from it, not with a
// system call each.
const ownStreamBuffer = 32 << 10

// lingerTimeout bounds how long a closed stream connection waits for its
// peer's end after sending its own; see ownConn.Close.
const lingerTimeout = time.Second

// ownConn is a stream's connection of its own: reads buffered, writes
// straight to the socket. It is a net.Conn.
type ownConn struct {
	net.Conn
	t        *Transport
	ctx      context.Context // its end closes the socket (newOwnConn)
	stop     func() bool     // stops closing it when ctx ends
	lingered chan struct{}   // closed once the socket is closed

	readMu sync.Mutex // held by Read; Close's lingering takes it from readers
	r      *bufio.Reader
	closed atomic.Bool

	closeOnce sync.Once
}

// newOwnConn wraps conn, a stream's connection of its own, and closes its
// socket when ctx ends: the transport's, or for a stream this node opened
// its peer's, which also ends when the peer leaves.
func newOwnConn(ctx context.Context, t *Transport, conn net.Conn) *ownConn {
	oc := &ownConn{Conn: conn, r: bufio.NewReaderSize(conn, ownStreamBuffer), t: t, ctx: ctx, lingered: make(chan struct{})}
	oc.stop = context.AfterFunc(ctx, func() { closeSocket(conn) })
	return oc
}

// Read reads through the buffer; once Close was called it fails with
// net.ErrClosed, a Read under way included.
func (c *ownConn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.r.Read(b)
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

// Write writes b to the socket, unless the context that closes it ended:
// the close runs in a goroutine of its own (context.AfterFunc), and a
// Write after the transport's Close returned, or after the peer left,
// would otherwise go into a socket about to close, and report it written.
func (c *ownConn) Write(b []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

// writeVectors writes a chunk header and its data in one vectored write
// (writev on a plain TCP connection), and returns the bytes written;
// not once the context that closes it ended (Write).
func (c *ownConn) writeVectors(header, data []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	bufs := net.Buffers{header, data}
	n, err := bufs.WriteTo(c.Conn)
	return int(n), err
}

// Close ends the connection without losing what the peer has yet to read.
// Closing a TCP socket with bytes unread in it resets the connection, and
// the reset discards what is still in this side's socket buffer — the end
// of a response written just before, say. So Close ends any Read under
// way, and in a goroutine of the transport's (which the transport's Close
// ends at once) half-closes (TCP FIN; over TLS a close_notify alert
// first, which waits up to 5 s for a peer that does not read), then reads
// and discards until the peer closes too or lingerTimeout passes, and
// only then closes the socket. No Write may be under way (Stream.Close
// calls abort then). Safe to call more than once; it does not wait.
func (c *ownConn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		cw, ok := c.Conn.(interface{ CloseWrite() error })
		// Not once Shutdown began (closing), only once Close did: a
		// stream that ends while Shutdown drains ends as gracefully as
		// any other, or its last bytes are lost.
		if !ok || chanClosed(c.t.closed) {
			c.closeNow()
			return
		}
		_ = c.Conn.SetReadDeadline(aLongTimeAgo) // a Read under way returns
		c.t.wg.Add(1)
		go func() {
			defer c.t.wg.Done()
			if cw.CloseWrite() != nil {
				c.closeNow()
				return
			}
			c.readMu.Lock()
			defer c.readMu.Unlock()
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.Copy(io.Discard, c.Conn)
			c.closeNow()
		}()
	})
	return nil
}

// stopReads makes a Read under way, and any later one, fail with
// net.ErrClosed, as Close does, while the stream's end marker may still be
// on its way out (Stream.Close).
func (c *ownConn) stopReads() {
	c.closed.Store(true)
	_ = c.Conn.SetReadDeadline(aLongTimeAgo)
}

// abort closes the socket at once, without a lingering end: a Write under
// way fails.
func (c *ownConn) abort() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeNow()
	})
}

func (c *ownConn) closeNow() {
	c.stop()
	closeSocket(c.Conn)
	close(c.lingered)
}

// closeSocket closes conn at once: over TLS the socket under it, as
// tls.Conn's Close first writes a close_notify alert, and waits up to 5 s
// for a peer that does not read.
func closeSocket(conn net.Conn) error {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return conn.Close()
}

// openOwnStream dials a connection of its own to p and opens a stream for
// verb on it.
func (t *Transport) openOwnStream(ctx context.Context, p *peer, verb Verb) (net.Conn, error) {
	if err := p.stopErrIfStopped(); err != nil {
		return nil, err
	}
	conn, err := t.dialForStream(ctx, p, laneOwnStream)
	if err != nil {
		return nil, err
	}
	oc := newOwnConn(p.ctx, t, conn)
	if err := t.greet(ctx, oc, verb, t.openDeadline(ctx)); err != nil {
		oc.abort()
		return nil, err
	}
	return oc, nil
}

// setOwnStreamUserTimeout sets TCP_USER_TIMEOUT on either end of a
// stream's connection of its own: bytes it wrote unacknowledged for
// Timeouts.Write mean the peer is gone, as on the lanes' connections.
// TCP keep-alive, this connection's liveness otherwise, never probes
// while bytes are outstanding: across a partition, a Read after a Write
// waited for TCP's retransmissions to give up (net.ipv4.tcp_retries2,
// about 15 minutes).
func (t *Transport) setOwnStreamUserTimeout(tcp *net.TCPConn) error {
	return SocketConfig{}.withUserTimeout(t.cfg.Timeouts.Write).apply(tcp)
}

// serveOwnStream serves an accepted stream connection of its own: one
// stream, whose read buffer is taken from the peer's inbound limits. It
// returns once the connection is closed.
func (t *Transport) serveOwnStream(conn net.Conn, p *peer) {
	defer t.releaseStreamConn(p, t.streamConnHold(laneOwnStream)) // taken by acceptHello
	oc := newOwnConn(t.ctx, t, conn)
	t.serveStream(p, oc, func() {}, nil) // closes oc
	<-oc.lingered
}
