package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// StreamHandler serves the streams a peer opens with one verb.
type StreamHandler interface {
	// ServeStream owns s until it returns; the transport then closes it.
	// ctx is cancelled when the transport closes; the stream then ends
	// cut short, however the handler ends it, so that its opener does not
	// take what was written for the whole. A panic is recovered and
	// logged, and the stream ends cut short too.
	ServeStream(ctx context.Context, s *Stream)
}

// StreamHandlerFunc adapts a function to StreamHandler.
type StreamHandlerFunc func(ctx context.Context, s *Stream)

// ServeStream calls f(ctx, s).
func (f StreamHandlerFunc) ServeStream(ctx context.Context, s *Stream) { f(ctx, s) }

// Stream is a reliable, ordered, flow-controlled byte stream to a peer,
// multiplexed with the peer's other streams on one connection (smux v2).
// It is a net.Conn: Read, Write, Close and deadlines behave as on a TCP
// connection, and CloseWrite half-closes it. Read and Write may be called
// from different goroutines (one of each at a time).
//
// The bytes travel in chunks, each prefixed with its length, and a
// zero-length chunk marks the end of the writer's data (see "Streams" in
// package wire). smux's own half-close is not used: before v1.5.58 a
// stream closed by both sides dropped data its reader had received but
// not yet read.
type Stream struct {
	t       *Transport
	s       net.Conn // a *smux.Stream, or an *ownConn (OwnConnection)
	peer    cluster.NodeID
	verb    Verb
	release func()
	once    sync.Once
	// peerCtx is the peer's context (peer.ctx) on a stream this node
	// opened: when the peer leaves, its end says why the stream ended.
	peerCtx context.Context

	// Reading: bytes left in the current chunk, whether the end marker
	// was read, and the next chunk's header, of which have bytes were
	// read.
	left   int
	eof    bool
	header [wire.StreamChunkHeaderSize]byte
	have   int
	// malformed is the error of a chunk header over the limit: the
	// stream is closed, and what follows the header is no chunk, so every
	// later Read fails with it too rather than read those bytes as one.
	malformed error

	// Session streams: the read-ahead Read takes the bytes from (see
	// streamahead.go), and the error that ended the stream from the
	// peer's side.
	ahead   *readAhead
	peerErr atomic.Pointer[error]

	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	// peerEnded says the read-ahead read the peer's end after Close:
	// the end marker, still waiting for the peer's window, never gets it.
	peerEnded atomic.Bool
	// The connection's one Close (startClose), and when it returned;
	// selfClosed says it began, so that smux's io.ErrClosedPipe is this
	// side's doing, not its session's close.
	closing    sync.Once
	selfClosed atomic.Bool
	connClosed chan struct{}
	connErr    error

	writeMu     sync.Mutex
	writeClosed bool
	// The caller's write deadline (SetWriteDeadline), zero for none, and
	// while a Write or CloseWrite is under way the bound Timeouts.Write
	// sets its current chunk (boundWrite): the socket's, or smux's,
	// deadline is the sooner of the two. deadlineMu guards both, and
	// setting the deadline on s.
	deadlineMu    sync.Mutex
	writeDeadline time.Time
	chunkBound    time.Time
	// cut says the stream's handler panicked or ended its goroutine
	// (runtime.Goexit): Close writes no end marker, so the opener reads
	// the stream cut short.
	cut     atomic.Bool
	scratch []byte // header and a small payload, written as one frame
	// A Write that failed part-way through a chunk (its deadline passed)
	// left the chunk unfinished: the rest of its header, and how many of
	// its bytes, are owed, and the next Write finishes it before a new
	// chunk begins, so that the peer reads the bytes in their frames.
	owedHeader []byte
	owed       int
	// The Write that failed, which ends the stream's writing: any on a
	// session stream, as smux reports a frame that its deadline overtook
	// in the session's queue as unwritten, and writes it later, so what
	// the peer will read is not known; one that timed out on a connection
	// of its own over TLS, which may have left a TLS record half written,
	// and after which crypto/tls fails every write on the connection.
	writeFailed error
}

var _ net.Conn = (*Stream)(nil)

// newStream wraps st, a stream to p, and starts a session stream's
// read-ahead.
// drain is st's session's (sessionDrain), nil for a connection of its own.
func (t *Transport) newStream(st net.Conn, p *peer, verb Verb, release func(), drain *sessionDrain) *Stream {
	s := &Stream{t: t, s: st, peer: p.id, verb: verb, release: release, closed: make(chan struct{})}
	if _, ok := st.(*smux.Stream); ok {
		s.startReadAhead(&p.streams.ahead, int64(t.cfg.Streams.SessionBuffer), t.cfg.Streams.StreamBuffer, drain)
	}
	return s
}

// badStreamInput counts and logs bytes of a stream from peer that are not
// the wire format (an opening, or a chunk header), as a frame's or a file
// header's are; the stream is closed for them.
func (t *Transport) badStreamInput(peer cluster.NodeID, err error) {
	kind := badInputOf(err)
	t.malformed[kind].Add(1)
	t.logs.warn(logKey{badInput: kind + 1}, "internode: closing stream on bad input", "peer", peer, "err", err)
}

// isClosed reports whether Close was called.
func (s *Stream) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// session reports whether s travels in the peer's stream session.
func (s *Stream) session() bool { return s.ahead != nil }

// Peer returns the node at the other end.
func (s *Stream) Peer() cluster.NodeID { return s.peer }

// Verb returns the verb the stream was opened with.
func (s *Stream) Verb() Verb { return s.verb }

// Read reads the peer's bytes; io.EOF once the peer called CloseWrite (or
// Close) and everything before it was read. A stream that ends without
// the peer's end marker — the peer's Close cut a Write short, or the
// connection failed — was cut short: Read returns io.ErrUnexpectedEOF.
func (s *Stream) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if s.malformed != nil {
		return 0, s.malformed
	}
	for s.left == 0 {
		if s.eof {
			return 0, io.EOF
		}
		for s.have < len(s.header) { // a Read cut short by its deadline goes on
			n, err := s.readRaw(s.header[s.have:])
			s.have += n
			if err != nil {
				return 0, s.why(cutShort(err))
			}
		}
		s.have = 0
		n, err := wire.ParseStreamChunkHeader(s.header[:])
		if err != nil { // a length over the limit: ErrMalformed
			s.malformed = err
			s.t.badStreamInput(s.peer, err)
			s.startClose(false)
			return 0, err
		}
		s.left = n
		s.eof = n == 0
	}
	n, err := s.readRaw(b[:min(len(b), s.left)])
	s.left -= n
	s.t.streamBytesReceived.Add(uint64(n))
	return n, s.why(cutShort(err))
}

// why returns err, an error of the stream's connection, marked
// ErrPeerLeft when the peer's leaving the membership ended the stream
// (see peer.stop), and ErrClosed once the transport closed: its close
// ends a session stream as a failed session does (errSessionEnded), which
// alone would not say that this node closed.
func (s *Stream) why(err error) error {
	if s.peerCtx != nil {
		err = leftErr(s.peerCtx, err)
	}
	if err != nil && err != io.EOF && chanClosed(s.t.closed) && !errors.Is(err, net.ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// readRaw reads the stream's bytes as the peer wrote them: a session
// stream's from its read-ahead. A connection of its own that failed under
// the stream (reset, or its bytes unacknowledged for Timeouts.Write) cut
// it short, as a failed session does: its error is kept, marked
// io.ErrUnexpectedEOF.
func (s *Stream) readRaw(b []byte) (int, error) {
	if s.ahead != nil {
		return s.ahead.read(b)
	}
	n, err := s.s.Read(b)
	if err != nil && err != io.EOF && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, err)
	}
	return n, err
}

// cutShort turns the end of the underlying stream before the end marker
// into io.ErrUnexpectedEOF.
func cutShort(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Write writes b to the peer, waiting while the peer's window is full.
// Config.Timeouts.Write bounds that wait, a chunk (64 KiB at most) at a
// time: a chunk the peer has not taken, all of it, within that time fails
// the Write with an error wrapping os.ErrDeadlineExceeded; each chunk
// taken in time gives the next as long, however long b takes in all. On
// a connection of its own a peer that reads slower than a chunk per
// Timeouts.Write (about 2 KiB/s at the default 30 s) is cut off as one
// that stopped. In a session the writer learns that the peer took bytes
// only from smux's window updates, which the peer sends each time it has
// taken half its window (half its StreamBuffer, 128 KiB by default): a
// chunk waits for the next, and a peer that takes less than that half
// window per Timeouts.Write (about 4.3 KiB/s at the defaults) is cut off.
// A deadline set with SetWriteDeadline applies too, and the sooner one
// ends the Write. CloseWrite is bounded the same way.
//
// On a stream with a connection of its own (OwnConnection) in plain
// text, like a TCP connection's, a Write whose deadline passes returns
// how much of b was written, and a later Write may go on from there.
// Elsewhere a Write whose deadline passes ends the stream's writing: on a
// stream in the peer's session (where any failed Write does), as its last
// bytes may or may not reach the peer (smux reports bytes that waited for
// the session's socket past the deadline as unwritten, and still writes
// them); on a connection of its own over TLS (Security.TLS), as the Write
// may have left a TLS record half written, and crypto/tls fails every
// later write on the connection. Later Writes and CloseWrite then fail at
// once with an error wrapping io.ErrClosedPipe (not a timeout, which a
// caller might retry), and Close ends the stream without its end marker:
// the peer reads it cut short (io.ErrUnexpectedEOF, or over TLS the error
// of a record cut short), never a clean end, never bytes twice.
//
// A Write to a stream the peer has closed fails: with an error wrapping
// syscall.ECONNRESET on a session stream, with the socket's (EPIPE or
// ECONNRESET) on a connection of its own. A session stream learns of the
// close by reading: a goroutine of its own reads it ahead of Read, up to
// the close, into a buffer of 32 KiB that grows up to the stream's window
// (streamahead.go). A close behind more unread bytes than the buffer
// holds is seen once Read takes some. A Write to a session stream whose
// session closed under it (the peer moved, the transport closed, the
// session's keepalive gave up) fails as Read does then, cut short: with
// an error wrapping io.ErrUnexpectedEOF, not io.ErrClosedPipe, the error
// of a stream its caller closed. Once this node's transport closed, Read
// and Write fail with errors wrapping ErrClosed (net.ErrClosed), on
// either kind of stream.
func (s *Stream) Write(b []byte) (int, error) {
	if s.isClosed() {
		return 0, io.ErrClosedPipe // not behind the end marker's wait
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.writeClosed {
		return 0, io.ErrClosedPipe
	}
	if err := s.peerError(); err != nil {
		return 0, s.why(err)
	}
	if s.writeFailed != nil {
		return 0, s.why(s.failedBefore())
	}
	defer s.unboundWrite()
	s.boundWrite()
	written, err := s.writeOwed(b)
	for err == nil && written < len(b) {
		chunk := b[written:min(len(b), written+wire.MaxStreamChunk)]
		var n int
		s.boundWrite() // a chunk taken in time: the next gets as long
		n, err = s.writeChunk(chunk)
		written += n
	}
	s.noteSessionEnded(err)
	if peerErr := s.peerError(); err != nil && peerErr != nil {
		err = peerErr
	}
	err = deadlineError(err)
	if err != nil && (s.session() || s.overTLS() && isTimeout(err)) {
		s.writeFailed = err
	}
	s.t.streamBytesSent.Add(uint64(written))
	return written, s.why(err)
}

// overTLS reports whether s has a connection of its own over TLS.
func (s *Stream) overTLS() bool {
	oc, own := s.s.(*ownConn)
	if !own {
		return false
	}
	_, ok := oc.Conn.(*tls.Conn)
	return ok
}

// noteSessionEnded takes err, a session stream's write's, for smux's on
// a stream whose session closed under it (the peer moved, the transport
// closed, smux's keepalive gave up) when it is smux's bare
// io.ErrClosedPipe and this side did not close the stream: the stream was
// cut short, as Read finds it (errSessionEnded), not closed by the
// caller, and every later Write and CloseWrite says so too (peerErr).
func (s *Stream) noteSessionEnded(err error) {
	if err == io.ErrClosedPipe && s.session() && !s.selfClosed.Load() {
		ended := errSessionEnded
		s.peerErr.CompareAndSwap(nil, &ended)
	}
}

// deadlineError turns smux's timeout into the one a net.Conn returns
// when its deadline passed (os.ErrDeadlineExceeded, which errors.Is
// finds), as a stream of its own connection returns.
func deadlineError(err error) error {
	if errors.Is(err, smux.ErrTimeout) {
		return os.ErrDeadlineExceeded
	}
	return err
}

// failedBefore is the error of a Write, CloseWrite or end marker after a
// Write failed that ended the stream's writing (Stream.writeFailed).
func (s *Stream) failedBefore() error {
	if !s.session() {
		return fmt.Errorf("transport: a Write timed out (%v), and a stream over TLS cannot go on from it: it may have left a TLS record half written: %w",
			s.writeFailed, io.ErrClosedPipe)
	}
	return fmt.Errorf("transport: a Write failed (%v), and a stream in a session cannot go on from a failed Write: its last bytes may yet reach the peer: %w",
		s.writeFailed, io.ErrClosedPipe)
}

// writeOwed finishes the chunk an earlier Write left unfinished, with the
// first of b's bytes, and returns how many of them it wrote. writeMu held.
func (s *Stream) writeOwed(b []byte) (int, error) {
	if len(s.owedHeader) > 0 {
		n, err := s.s.Write(s.owedHeader)
		s.owedHeader = s.owedHeader[n:]
		if err != nil {
			return 0, err
		}
	}
	if s.owed == 0 {
		return 0, nil
	}
	n, err := s.s.Write(b[:min(s.owed, len(b))])
	s.owed -= n
	return n, err
}

// writeChunk writes one length-prefixed chunk — small ones copied behind
// their header into one frame, large ones as a header frame and the
// caller's bytes (on a connection of its own, one vectored write) — and
// returns how many of its bytes were written. One cut short leaves the
// rest owed (see Stream.owed). writeMu held.
func (s *Stream) writeChunk(chunk []byte) (int, error) {
	s.scratch = wire.AppendStreamChunkHeader(s.scratch[:0], len(chunk))
	header := len(s.scratch)
	var n int
	var err error
	switch oc, own := s.s.(*ownConn); {
	case len(chunk) <= 4<<10:
		s.scratch = append(s.scratch, chunk...)
		n, err = s.s.Write(s.scratch)
	case own:
		n, err = oc.writeVectors(s.scratch, chunk)
	default:
		n, err = s.s.Write(s.scratch)
		if err == nil {
			var m int
			m, err = s.s.Write(chunk)
			n += m
		}
	}
	if err != nil {
		if n < header {
			s.owedHeader = append(s.owedHeader[:0], s.scratch[n:header]...)
		}
		s.owed = len(chunk) - max(n-header, 0)
	}
	return max(n-header, 0), err
}

// endMarker writes the end of the writer's data, unless a chunk is left
// unfinished, a Write failed that ended the stream's writing, or the
// transport's Close has begun (the peer then sees the stream cut short).
// Close ends the handlers' contexts before it closes their connections:
// a handler that stops for it, its data unfinished, and closes its
// stream would otherwise end it cleanly, and its opener read a stream
// cut short as whole. writeMu held.
func (s *Stream) endMarker() error {
	if chanClosed(s.t.closed) {
		return fmt.Errorf("transport: the stream's end is not written once the transport closed: %w", ErrClosed)
	}
	if s.writeFailed != nil {
		return s.failedBefore()
	}
	if s.owed > 0 || len(s.owedHeader) > 0 {
		return fmt.Errorf("transport: stream ended inside a chunk cut short by a failed Write: %w", io.ErrShortWrite)
	}
	_, err := s.writeChunk(nil)
	return err
}

// CloseWrite half-closes the stream: the peer reads io.EOF after the bytes
// written so far, and can still write. Once this node's transport has
// begun to close it fails with ErrClosed, and the peer reads the stream
// cut short. Safe to call more than once.
func (s *Stream) CloseWrite() error {
	if s.isClosed() {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.writeClosed {
		return nil
	}
	s.writeClosed = true
	s.boundWrite()
	err := s.endMarker()
	s.unboundWrite()
	s.noteSessionEnded(err)
	err = deadlineError(err)
	if peerErr := s.peerError(); err != nil && peerErr != nil {
		err = peerErr
	}
	return s.why(err)
}

// Close closes the stream both ways; the peer reads io.EOF after what was
// written (cut short, io.ErrUnexpectedEOF, once this node's transport has
// begun to close). A Read or Write under way in another goroutine fails: Close
// does not wait for it, not even for a Write waiting for a peer that does
// not read (the peer then sees the stream end without its end marker).
// Close returns within about a second: the stream's end that is still
// waiting then — its end marker behind a peer that reads slowly, the
// close behind a congested session — goes out in the background once the
// peer or the session moves (for up to 30 s each). Safe to call more than
// once; a later call returns at once.
func (s *Stream) Close() error {
	first := false
	s.closeOnce.Do(func() {
		// Before closed: a read-ahead that sees closed finds its buffer
		// emptied, and reads on rather than wait for room again.
		s.stopReading()
		close(s.closed)
		first = true
	})
	if !first {
		return nil
	}
	deadline := time.Now().Add(lingerTimeout)
	var err error
	if s.writeMu.TryLock() {
		// The peer sees a clean end, not a reset, unless its handler
		// panicked (cut) or it half-closed already.
		marker := !s.writeClosed && !s.cut.Load()
		s.writeClosed = true
		s.writeMu.Unlock()
		err = s.closeConn(deadline, marker)
	} else if oc, ok := s.s.(*ownConn); ok {
		oc.abort() // the Write under way holds the socket: no graceful end
		s.once.Do(s.release)
	} else {
		err = s.closeConn(deadline, false)
	}
	if errors.Is(err, io.ErrClosedPipe) {
		return nil // already closed
	}
	return err
}

// endTimeout bounds how long a closed stream's end marker waits for the
// peer to take it: as long as smux gives a session stream's close. A peer
// that reads more slowly than that is taken for one that stopped.
const endTimeout = 30 * time.Second

// stopReading makes a Read under way, and any later one, fail now that
// Close was called, rather than once the stream's end has gone out.
func (s *Stream) stopReading() {
	if s.ahead != nil {
		s.ahead.close()
	} else if oc, ok := s.s.(*ownConn); ok {
		oc.stopReads()
	}
}

// closeConn closes the stream's connection (startClose), after its end
// marker when marker says so, waiting until deadline at most, and lets go
// of the stream's place among the peer's streams once the close is done,
// so that a congested session holds no more closes than
// StreamConfig.MaxPerPeer.
func (s *Stream) closeConn(deadline time.Time, marker bool) error {
	closed := s.startClose(marker)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-closed:
		s.once.Do(s.release)
		return s.connErr
	case <-timer.C:
		go func() {
			<-closed
			s.once.Do(s.release)
		}()
		return nil
	}
}

// startClose closes the stream's connection, once, and returns a channel
// closed when that is done. With marker (Close's call, the first), the
// end marker goes first: it waits for the peer's window up to endTimeout,
// for a peer that reads slowly is not a peer that is gone; the peer's own
// end, seen by the read-ahead (ended), ends that wait. A connection of its
// own with no marker to write closes at once (ownConn.Close lingers in the
// background). A session stream's close queues its FIN behind the
// session's frames, and smux waits up to 30 s for the session's socket to
// take it (or for the session's end): in a goroutine of its own, whoever
// starts it — Close, Read finding the stream malformed, or the read-ahead
// reading the peer's end (ended).
func (s *Stream) startClose(marker bool) <-chan struct{} {
	s.closing.Do(func() {
		s.selfClosed.Store(true)
		s.connClosed = make(chan struct{})
		if !s.session() && !marker {
			s.connErr = s.s.Close()
			close(s.connClosed)
			return
		}
		go func() {
			if marker {
				s.writeEnd()
			}
			s.connErr = s.s.Close()
			close(s.connClosed)
		}()
	})
	return s.connClosed
}

// writeEnd writes the end marker of a stream Close closed: writeClosed is
// set, so no Write or CloseWrite writes any more, and Write does not wait
// for writeMu (see Stream.closed).
func (s *Stream) writeEnd() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.s.SetWriteDeadline(time.Now().Add(endTimeout))
	if s.peerEnded.Load() {
		return // after the deadline: ended's may have come before it
	}
	_ = s.endMarker()
}

func (s *Stream) LocalAddr() net.Addr  { return s.s.LocalAddr() }
func (s *Stream) RemoteAddr() net.Addr { return s.s.RemoteAddr() }

// SetWriteDeadline sets the deadline of Write and CloseWrite. Whatever it
// says, Timeouts.Write bounds each chunk they write (see Write).
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.deadlineMu.Lock()
	defer s.deadlineMu.Unlock()
	s.writeDeadline = t
	return s.s.SetWriteDeadline(sooner(t, s.chunkBound))
}

// boundWrite gives the chunk a Write is about to write Timeouts.Write
// from now, or the caller's deadline if that comes sooner: a chunk the
// peer has not taken within that time fails the Write, while one that
// takes each chunk in time, however slowly in all, does not. writeMu
// held.
func (s *Stream) boundWrite() {
	d := s.t.cfg.Timeouts.Write
	if d <= 0 {
		return
	}
	s.deadlineMu.Lock()
	defer s.deadlineMu.Unlock()
	s.chunkBound = time.Now().Add(d)
	_ = s.s.SetWriteDeadline(sooner(s.writeDeadline, s.chunkBound))
}

// unboundWrite leaves the caller's deadline alone in force once a Write
// returns. writeMu held.
func (s *Stream) unboundWrite() {
	s.deadlineMu.Lock()
	defer s.deadlineMu.Unlock()
	if s.chunkBound.IsZero() {
		return
	}
	s.chunkBound = time.Time{}
	_ = s.s.SetWriteDeadline(s.writeDeadline)
}

// sooner returns the earlier of two deadlines, zero meaning none.
func sooner(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// SetReadDeadline sets the deadline of Read; on a session stream it is
// kept from smux (see streamahead.go).
func (s *Stream) SetReadDeadline(t time.Time) error {
	if s.ahead != nil {
		s.ahead.setDeadline(t)
		return nil
	}
	return s.s.SetReadDeadline(t)
}

func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// streamState is a peer's stream session and stream counts.
type streamState struct {
	mu      sync.Mutex
	session atomic.Pointer[smux.Session] // outbound: this node's session to the peer; set under mu
	addr    string                       // under mu: the address session was dialled to
	dialing chan struct{}                // under mu: closed when the dial under way ends
	out, in atomic.Int32                 // open streams each way
	// Of those, the ones in a session (sessionStreams bounds them).
	sessionOut, sessionIn atomic.Int32
	// sessionOutAt is when sessionOut last changed (UnixNano): the
	// outbound session is idle once it has been 0 for Timeouts.Idle.
	sessionOutAt atomic.Int64
	ahead        aheadAllowance // the streams' read-ahead buffers, both ways
}

// HandleStream registers h for the streams peers open with verb. Safe to
// call while serving; nil removes the handler.
func (t *Transport) HandleStream(verb Verb, h StreamHandler) {
	setHandler(&t.handlersMu, &t.streamHandlers, verb, h)
}

// OpenStream opens a byte stream to peer, served there by the handler
// registered for verb with HandleStream. The first stream to a peer dials
// its stream connection; later ones share it. With OwnConnection, the
// stream has a connection of its own instead. When the peer leaves the
// membership the stream ends: its Reads, Writes and CloseWrite under way
// and after fail with an error that wraps ErrPeerLeft.
//
// Errors: ErrUnknownVerb (no handler there), ErrOverloaded (too many
// streams, see StreamConfig.MaxPerPeer; or the peer refused the stream
// connection: it holds as many of this node's as it allows, or has no
// inbound capacity for its buffer now; or the peer is shutting down),
// ErrRefused (among others: the peer's inbound limits cannot hold a
// stream connection's buffer beside its largest message's room even with
// none open, so no retry helps until its limits change), ErrUnknownPeer,
// ErrClosed, or the
// dial's or the context's error; each in an *OpError.
func (t *Transport) OpenStream(ctx context.Context, to cluster.NodeID, verb Verb, opts ...StreamOption) (*Stream, error) {
	var o streamOptions
	for _, opt := range opts {
		opt(&o)
	}
	kind := routing.Lane(laneStreams)
	if o.ownConnection {
		kind = laneOwnStream
	}
	fail := func(err error) (*Stream, error) {
		t.streamOpenFailures.Add(1)
		return nil, &OpError{Op: "open stream", Peer: to, Lane: kind, Err: err}
	}
	if t.closing.Load() {
		return fail(ErrClosed)
	}
	p, err := t.peerFor(to, true)
	if err != nil {
		return fail(err)
	}
	if int(p.streams.out.Add(1)) > t.cfg.Streams.MaxPerPeer {
		p.streams.out.Add(-1)
		return fail(ErrOverloaded)
	}
	release := func() { p.streams.out.Add(-1) }
	var st net.Conn
	var drain *sessionDrain
	if o.ownConnection {
		st, err = t.openOwnStream(ctx, p, verb)
	} else {
		if int(p.streams.addSessionOut(1)) > t.cfg.Streams.sessionStreams(true) {
			p.streams.addSessionOut(-1)
			release()
			return fail(ErrOverloaded)
		}
		release = func() { p.streams.holdSessionOut(-1) }
		var sst *smux.Stream
		sst, drain, err = t.openStream(ctx, p, verb)
		if sst != nil {
			st = sst
		}
	}
	if err != nil {
		release()
		if ctx.Err() == nil && p.ctx.Err() != nil {
			// The peer stopped (it left, or the transport closed) while
			// the stream opened, which ends its opening with the error of
			// the connection that its stop closed: why, as its dial says
			// (dialFor).
			err = p.stopErr()
		}
		var he *HandshakeError
		if errors.As(err, &he) && he.Reason == wire.Busy {
			// The peer holds as many stream connections from this node
			// as it allows, has no inbound capacity for another's
			// buffer, or is shutting down: overloaded, as when it
			// refuses a stream beyond MaxPerPeer.
			err = fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		return fail(err)
	}
	s := t.newStream(st, p, verb, release, drain)
	s.peerCtx = p.ctx
	t.streamsOpened.Add(1)
	return s, nil
}

// openStream opens a stream for verb in p's session, and returns it with
// the session's drain.
func (t *Transport) openStream(ctx context.Context, p *peer, verb Verb) (*smux.Stream, *sessionDrain, error) {
	session, fresh, err := t.streamSession(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	st, err := t.openOn(ctx, p, session, verb)
	if err == nil || fresh || !sessionBroke(ctx, err) {
		return st, t.drainOf(session), err
	}
	// The session was an old one and its connection broke — the peer
	// restarted, say, and its close had not been read yet: the stream
	// was never handed out, so open it again on a new session.
	session, _, err = t.streamSession(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	st, err = t.openOn(ctx, p, session, verb)
	return st, t.drainOf(session), err
}

// sessionBroke reports whether err, from opening a stream, says its
// session's connection broke rather than that the peer refused the
// stream, the context ended or the peer was slow to answer.
func sessionBroke(ctx context.Context, err error) bool {
	var re *RemoteError
	return ctx.Err() == nil && !errors.As(err, &re) && !isTimeout(err)
}

// openOn opens a stream for verb on p's session. Any failure but a
// refusal lets the session go, so that the next stream dials a new one,
// and closes it: smux leaves open a session whose socket failed. It is
// closed once its read-aheads took what smux holds for them
// (closeWhenDrained): smux's Close throws that away, and an older stream
// whose peer had ended it, every byte arrived, would read cut short.
func (t *Transport) openOn(ctx context.Context, p *peer, session *smux.Session, verb Verb) (*smux.Stream, error) {
	st, err := t.openStreamOn(ctx, p, session, verb)
	if err != nil && sessionBroke(ctx, err) {
		p.streams.mu.Lock()
		p.streams.session.CompareAndSwap(session, nil)
		p.streams.mu.Unlock()
		if drain := t.drainOf(session); drain != nil {
			drain.closeWhenDrained()
		} else {
			session.Close() // it ended already
		}
	}
	return st, err
}

// openStreamOn opens a stream for verb on p's session, within the
// handshake timeout and ctx.
func (t *Transport) openStreamOn(ctx context.Context, p *peer, session *smux.Session, verb Verb) (*smux.Stream, error) {
	return openSessionStream(ctx, p.streams.holdSessionOut, session, verb, t.openDeadline(ctx))
}

// holdSessionOut adds n to the peer's outbound streams, and to those of
// them in its session.
func (st *streamState) holdSessionOut(n int32) int32 {
	st.out.Add(n)
	return st.addSessionOut(n)
}

// addSessionOut adds n to the peer's outbound streams in its session, and
// notes when (closeIfIdle): first, so that a count closeIfIdle reads comes
// with its time.
func (st *streamState) addSessionOut(n int32) int32 {
	st.sessionOutAt.Store(time.Now().UnixNano())
	return st.sessionOut.Add(n)
}

// closeIfIdle closes session, the peer's outbound stream session, once no
// stream was open on it for idle (Timeouts.Idle), as a lane's idle
// connection is closed: an accepted session holds its acceptor's inbound
// capacity (StreamConfig.SessionBuffer) for as long as it lives, which
// other peers' sessions may be refused for. Under mu, which
// streamSession takes after OpenStream counted its stream: a stream
// counted before this looks keeps the session, and one counted after
// finds it gone and dials a new one.
func (st *streamState) closeIfIdle(session *smux.Session, idle time.Duration) {
	st.mu.Lock()
	idled := st.sessionOut.Load() == 0 && time.Since(time.Unix(0, st.sessionOutAt.Load())) >= idle &&
		st.session.CompareAndSwap(session, nil)
	st.mu.Unlock()
	if idled {
		session.Close() // not under mu: over TLS it writes a close_notify
	}
}

// openDeadline is when opening a stream gives up: the handshake timeout
// from now, or ctx's deadline if sooner.
func (t *Transport) openDeadline(ctx context.Context) time.Time {
	deadline := time.Now().Add(t.cfg.Timeouts.Handshake)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline
}

// openSessionStream opens a stream for verb on session — a SYN, then the
// greeting (the verb, answered by the acceptor's status byte) — by
// deadline, or until ctx ends. Behind a congested session smux waits up to
// 30 s for the socket to take the SYN, and a frame that waits in the
// session's queue wakes for neither a deadline set later nor a close, so
// the open runs in a goroutine of its own, and the caller waits for it
// beside ctx. A stream the caller no longer waits for, or one refused, is
// closed, and counts (hold, the peer's outbound streams) until its close
// has gone out, so that a congested session holds no more closes than
// StreamConfig.MaxPerPeer.
func openSessionStream(ctx context.Context, hold func(int32) int32, session *smux.Session, verb Verb, deadline time.Time) (*smux.Stream, error) {
	type opened struct {
		st  *smux.Stream
		err error
	}
	done := make(chan opened, 1)
	var gaveUp atomic.Bool
	go func() {
		st, err := session.OpenStream()
		if err == nil && !gaveUp.Load() { // no verb for a stream no one waits for
			_ = st.SetDeadline(deadline)
			err = greeting(st, verb)
		}
		done <- opened{st, err}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var err error
	select {
	case o := <-done:
		switch {
		case o.err == nil:
			_ = o.st.SetDeadline(time.Time{})
			return o.st, nil
		case o.st == nil:
			return nil, o.err
		case isTimeout(o.err):
			dropStream(ctx, hold, o.st, time.Time{})
			return nil, passed(ctx, deadline, o.err)
		default:
			// The greeting ended (a refusal, say): the close goes out at
			// once, and the caller's next stream should not find its
			// place taken.
			dropStream(ctx, hold, o.st, time.Now().Add(lingerTimeout))
			return nil, o.err
		}
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = passed(ctx, deadline, fmt.Errorf("opening stream: %w", os.ErrDeadlineExceeded))
	}
	gaveUp.Store(true)
	hold(1) // the stream counts until it is closed
	go func() {
		if o := <-done; o.st != nil {
			o.st.Close()
		}
		hold(-1)
	}()
	return nil, err
}

// dropStream closes st, a session stream that was never handed out,
// waiting for the close until until at most, or until ctx ends; then the
// close goes on in the background, where smux waits up to 30 s for the
// session's socket. It counts (hold) until it is done (see
// openSessionStream).
func dropStream(ctx context.Context, hold func(int32) int32, st *smux.Stream, until time.Time) {
	hold(1)
	closed := make(chan struct{})
	go func() {
		st.Close()
		hold(-1)
		close(closed)
	}()
	wait := time.Until(until)
	if wait <= 0 {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-closed:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// greet opens st, a stream on a connection of its own, for verb: the
// greeting, by deadline, or until ctx ends (which sets a deadline passed,
// and so ends a Read or Write under way). The caller closes st when it
// fails.
func (t *Transport) greet(ctx context.Context, st net.Conn, verb Verb, deadline time.Time) error {
	_ = st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(aLongTimeAgo) })
	err := greeting(st, verb)
	if !stop() {
		return ctx.Err() // its end may have cut the greeting short
	}
	if isTimeout(err) {
		return passed(ctx, deadline, err)
	}
	if err != nil {
		return err
	}
	_ = st.SetDeadline(time.Time{})
	return nil
}

// greeting writes the verb and reads the acceptor's status byte.
func greeting(st net.Conn, verb Verb) error {
	if _, err := st.Write(wire.AppendStreamOpen(nil, uint32(verb))); err != nil {
		return err
	}
	var status [1]byte
	if _, err := io.ReadFull(st, status[:]); err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	if code, refused := wire.ParseStreamStatus(status[0]); refused {
		return &RemoteError{Code: code}
	}
	return nil
}

// passed is the error of an open whose deadline passed: ctx's, when the
// deadline was ctx's (its timer may not have fired yet), or else err.
func passed(ctx context.Context, deadline time.Time, err error) error {
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		return context.DeadlineExceeded
	}
	return err
}

// streamSession returns the peer's outbound stream session, dialling it if
// there is none or it died; fresh says it was dialled for this call. One
// call dials at a time; the others wait for it, or for their contexts, and
// the lock is not held while it dials (Health reads the session too).
func (t *Transport) streamSession(ctx context.Context, p *peer) (s *smux.Session, fresh bool, err error) {
	for {
		p.streams.mu.Lock()
		if s := p.streams.session.Load(); s != nil && !s.IsClosed() {
			p.streams.mu.Unlock()
			return s, false, nil
		}
		if err := p.stopErrIfStopped(); err != nil {
			p.streams.mu.Unlock()
			return nil, false, err
		}
		wait := p.streams.dialing
		if wait == nil {
			break // this call dials
		}
		p.streams.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	done := make(chan struct{})
	p.streams.dialing = done
	p.streams.mu.Unlock()
	s, addr, err := t.dialStreamSession(ctx, p)
	p.streams.mu.Lock()
	p.streams.dialing = nil
	close(done)
	if err != nil {
		p.streams.mu.Unlock()
		return nil, false, err
	}
	if err := p.stopErrIfStopped(); err != nil {
		p.streams.mu.Unlock()
		s.Close() // the peer stopped while it dialled
		return nil, false, err
	}
	p.streams.session.Store(s)
	p.streams.addr = addr
	p.streams.mu.Unlock()
	// The peer may have moved while this dialled its old address: the
	// move (peer.moved) found no session to close, and this one would
	// carry every later stream to whatever answers there. Asked once the
	// session is published, not under the lock (see newPeer): a move
	// that this Lookup misses is told afterwards, and closes it then.
	if m, ok := t.cfg.Membership.Lookup(p.id); ok && m.Addr != addr {
		p.streams.mu.Lock()
		p.streams.session.CompareAndSwap(s, nil)
		p.streams.mu.Unlock()
		s.Close()
		return t.streamSession(ctx, p) // to the new address
	}
	return s, true, nil
}

// dialStreamSession dials a stream session to p, and returns the address
// it dialled: the membership's, asked just before.
func (t *Transport) dialStreamSession(ctx context.Context, p *peer) (*smux.Session, string, error) {
	var addr string
	if m, ok := t.cfg.Membership.Lookup(p.id); ok {
		addr = m.Addr // what dial dials, unless it changes meanwhile
	}
	conn, err := t.dialForStream(ctx, p, laneStreams)
	if err != nil {
		return nil, "", err
	}
	s, err := smux.Client(conn, t.cfg.Streams.smux(t.cfg.Timeouts.Keepalive))
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	drain := t.newSessionDrain(s)
	go t.closeWhenBroken(p, s, drain) // ends with s, which every path closes
	return s, addr, nil
}

// closeWhenBroken closes session, a stream session this node dialled to p,
// once no stream was open on it for Timeouts.Idle (closeIfIdle), and once
// its connection fails — the peer's transport closed, say — as the accept
// loop ends an accepted one (serveStreams). smux ends a Write waiting for
// a stream's window when the session closes, not when its socket's read
// fails; a stream's read-ahead sees that failure only while it has room to
// read, so a Write on a stream whose read-ahead was full of unread bytes
// waited for the session's keep-alive to find it silent. AcceptStream is how smux tells of
// the failure; the peer opens no streams on this session, and one it
// opens is closed.
func (t *Transport) closeWhenBroken(p *peer, session *smux.Session, drain *sessionDrain) {
	defer drain.forget()
	idle := t.cfg.Timeouts.Idle
	for {
		if idle > 0 {
			_ = session.SetDeadline(time.Now().Add(idle))
		}
		st, err := session.AcceptStream()
		switch {
		case err == nil:
			st.Close()
		case isTimeout(err):
			p.streams.closeIfIdle(session, idle)
		default:
			drain.wait(session) // the bytes smux holds, read before its close drops them
			session.Close()
			return
		}
	}
}

// dialForStream dials a stream connection of kind to p (dialFor).
func (t *Transport) dialForStream(ctx context.Context, p *peer, kind routing.Lane) (net.Conn, error) {
	conn, _, err := t.dialFor(ctx, p, uint8(kind))
	return conn, err
}

// dialFor dials a connection of kind to p within ctx, for a stream or a
// file transfer, and gives up at once when p stops (it leaves, or the
// transport closes), as a lane's dial does (peer.stop): a peer that takes
// the connection and never answers its handshake would otherwise hold
// OpenStream or SendFile for the whole Timeouts.Handshake after that. It
// then fails with why p stopped (ErrClosed: the transport's Close ends
// p.ctx before it stops p). A member's entry whose dial finds no address
// is a member that left, its Leave on its way (the membership changes
// before it tells): it fails with ErrPeerLeft, as the Leave would, and
// as a lane's dial does (connect).
func (t *Transport) dialFor(ctx context.Context, p *peer, kind uint8) (net.Conn, wire.Capabilities, error) {
	dialCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	conn, caps, err := t.dialAgreeing(dialCtx, p.id, kind)
	if err != nil && ctx.Err() == nil {
		if p.ctx.Err() != nil {
			return nil, 0, p.stopErr()
		}
		if errors.Is(err, ErrUnknownPeer) && p.member.Load() {
			return nil, 0, fmt.Errorf("%w: the membership no longer has it", ErrPeerLeft)
		}
	}
	return conn, caps, err
}

// closeStreams closes the peer's outbound stream session.
func (p *peer) closeStreams() {
	p.streams.mu.Lock()
	defer p.streams.mu.Unlock()
	if s := p.streams.session.Swap(nil); s != nil {
		s.Close()
	}
}

// streamsMoved closes the peer's outbound stream session unless it was
// dialled to addr, the peer's new address: one dialled since the move,
// told late, is where it should be.
func (p *peer) streamsMoved(addr string) {
	p.streams.mu.Lock()
	defer p.streams.mu.Unlock()
	if s := p.streams.session.Load(); s != nil && p.streams.addr != addr {
		p.streams.session.Store(nil)
		s.Close()
	}
}

// serveStreams runs an accepted stream session until it ends.
func (t *Transport) serveStreams(conn net.Conn, p *peer) {
	defer t.releaseStreamConn(p, t.streamConnHold(laneStreams)) // taken by acceptHello
	session, err := smux.Server(conn, t.cfg.Streams.smux(t.cfg.Timeouts.Keepalive))
	if err != nil {
		return
	}
	drain := t.newSessionDrain(session)
	defer drain.forget()
	var handlers sync.WaitGroup
	defer handlers.Wait()
	// Closed before its handlers are waited for: the accept loop ends when
	// the session's connection does, and smux ends a handler's Write that
	// waits for the opener's window for the session's close, not for its
	// socket's read error; the stream's read-ahead sees that error only
	// while it has room to read, so a handler that had not read the
	// opener's bytes waited for the session's keep-alive, and the
	// transport's Close with it.
	defer session.Close()
	// Before the close, which drops the bytes smux holds for the
	// streams, the streams' read-aheads take them: a stream that the
	// opener ended cleanly before its connection ended reads whole.
	defer drain.wait(session)
	// Streams that have not said their verb yet are bounded too, or a peer
	// could open any number, each holding a goroutine. Those beyond the
	// bound wait for one goroutine to refuse them (refuseStreams).
	opening := make(chan struct{}, t.cfg.Streams.MaxPerPeer)
	var refusals chan refusal // made for the session's first refusal
	defer func() {
		if refusals != nil {
			close(refusals) // before handlers.Wait: it ends refuseStreams
		}
	}()
	for {
		st, err := session.AcceptStream()
		if err != nil {
			return
		}
		select {
		case opening <- struct{}{}:
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				t.serveStream(p, st, func() { <-opening }, drain)
			}()
			continue
		default:
		}
		if refusals == nil {
			refusals = make(chan refusal, maxRefusals)
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				t.refuseStreams(refusals)
			}()
		}
		select {
		case refusals <- refusal{st, time.Now().Add(t.cfg.Timeouts.Handshake)}:
		default:
			// As many refusals waiting as smux holds streams not yet
			// accepted: no opener that counts its streams (OpenStream)
			// opens that many. Closed without a status byte, which the
			// opener takes for its session failing.
			st.Close()
			t.streamsRefused.Add(1)
		}
	}
}

// maxRefusals bounds the streams a session keeps waiting for their
// refusal (refuseStreams): smux's own backlog of streams not yet
// accepted.
const maxRefusals = 1024

// refusal is a stream to refuse, and when its opening's time is up.
type refusal struct {
	st net.Conn
	by time.Time
}

// refuseStreams refuses the streams a session had beyond the bound on
// streams opening at once, one after another, each as overloaded: closed
// without a status byte, the opener cannot tell the close from its
// session's connection failing, and closes the session with every stream
// on it. A refusal waits for the opener's verb: smux before v1.5.58,
// which earlier builds of internode use, registers a stream it opens only
// once its SYN is written, and drops what arrives for it before, so a
// refusal sent at once could be lost, and the open time out; the verb
// comes after the registration. Each takes no longer than
// the stream's opening may (refusal.by), and none holds the session's
// accept loop, which a congested session's socket would.
func (t *Transport) refuseStreams(refusals <-chan refusal) {
	for r := range refusals {
		t.streamsRefused.Add(1)
		_ = r.st.SetDeadline(r.by)
		if _, err := wire.ReadStreamOpen(byteReader{r.st}); err == nil {
			_, _ = r.st.Write(wire.AppendStreamRefuse(nil, wire.FailureOverloaded))
		}
		r.st.Close()
	}
}

// serveStream reads a new stream's verb, admits it and runs its handler.
// drain is st's session's, nil for a connection of its own.
func (t *Transport) serveStream(p *peer, st net.Conn, opened func(), drain *sessionDrain) {
	admitted, malformed := false, false
	defer func() {
		if !admitted {
			st.Close()
			if !malformed {
				t.streamsRefused.Add(1)
			}
		}
	}()
	_ = st.SetDeadline(time.Now().Add(t.cfg.Timeouts.Handshake))
	verb, err := wire.ReadStreamOpen(byteReader{st})
	opened()
	if err != nil {
		if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTruncated) {
			// An opening that is not the wire format, or cut short by the
			// stream's end: on a connection of its own, the connection is
			// closed for it.
			t.badStreamInput(p.id, err)
			malformed = true
		}
		return
	}
	if !t.cfg.Security.AcceptUnknownPeers && !t.isMember(p.id) {
		// A node that left is not served (closeInboundFrom), but its
		// session outlives the Leave, with the handlers it runs. Closed
		// without a status byte: its opener takes the session for broken,
		// dials a new one, and is refused as an unknown node, as its
		// messages are.
		return
	}
	refuse := func(code wire.FailureCode) { _, _ = st.Write(wire.AppendStreamRefuse(nil, code)) }
	h := (*t.streamHandlers.Load())[Verb(verb)]
	if h == nil {
		refuse(wire.FailureUnknownVerb)
		return
	}
	if t.closing.Load() {
		// Shutdown does not wait for streams: one accepted now would be
		// cut off by its close. Refused as a new stream connection is
		// (claimConn), so that its opener turns to another node at once.
		refuse(wire.FailureOverloaded)
		return
	}
	if int(p.streams.in.Add(1)) > t.cfg.Streams.MaxPerPeer {
		p.streams.in.Add(-1)
		refuse(wire.FailureOverloaded)
		return
	}
	release := func() { p.streams.in.Add(-1) }
	if _, inSession := st.(*smux.Stream); inSession {
		// Bounded so that the session's streams' windows fit in its
		// buffer: see StreamConfig.sessionStreams.
		if int(p.streams.sessionIn.Add(1)) > t.cfg.Streams.sessionStreams(false) {
			p.streams.sessionIn.Add(-1)
			release()
			refuse(wire.FailureOverloaded)
			return
		}
		release = func() {
			p.streams.sessionIn.Add(-1)
			p.streams.in.Add(-1)
		}
	}
	if _, err := st.Write(wire.AppendStreamAccept(nil)); err != nil {
		release()
		return
	}
	_ = st.SetDeadline(time.Time{})
	admitted = true // Stream.Close closes st, once
	t.streamsAccepted.Add(1)
	s := t.newStream(st, p, Verb(verb), release, drain)
	defer s.Close()
	returned := false
	defer func() {
		r := recover()
		switch {
		case r != nil:
			t.log.Error("internode: stream handler panicked", "peer", p.id, "verb", verb, "panic", r)
		case !returned:
			t.log.Error("internode: stream handler ended its goroutine", "peer", p.id, "verb", verb)
		default:
			return
		}
		// No end marker: the opener reads the stream cut short. Not a
		// wait for the write lock either: a Write of the handler's
		// under way may wait for the opener's window until the
		// stream closes, which is Close's to do, next.
		s.cut.Store(true)
	}()
	h.ServeStream(t.ctx, s)
	returned = true
}

// byteReader reads one byte at a time, for wire.ReadStreamOpen: the verb
// is read without reading past it.
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var one [1]byte
	_, err := io.ReadFull(b.r, one[:])
	return one[0], err
}

// ctxErrOr prefers the context's error: a cancelled context shows as a
// closed stream otherwise.
func ctxErrOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
