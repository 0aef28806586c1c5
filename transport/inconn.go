package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// inConn is one accepted message connection. Its reader goroutine decodes
// frames, takes inbound capacity for each before it allocates anything for
// it, and hands each whole message to its verb's stage or ordered queue
// (route); its back channel carries the acceptor's beats, the responses to
// its requests (replies), and on the large lane the grants and refusals of
// large messages.
//
// A reader waits for capacity only where nothing of its own connection can
// be holding the capacity it waits for: on the urgent and small lanes a
// frame's messages are all whole, and on the large lane it never waits at
// all — a large message is granted room before its sender may send its
// payload, so every part that arrives already has its buffer. That is why
// no combination of limits can wedge a connection.
type inConn struct {
	t        *Transport
	id       uint64
	peer     *peer
	from     cluster.NodeID
	lane     routing.Lane
	counters *inCounters
	conn     net.Conn
	src      *bufio.Reader
	probe    *sockstat.Probe   // nil when the connection has no kernel socket
	sampler  sockstat.Sampler  // picks the reads after which probe is read; the reader's
	account  *limit.Account    // this connection's share of the peer's inbound budget
	caps     wire.Capabilities // what the handshake agreed
	header   wire.Header       // the message being decoded; the reader's (forEachMessage)

	done      chan struct{} // closed when the connection ends
	closeOnce sync.Once
	lastRenew time.Time // when the read deadline was last pushed back
	// frameStart is when the frame being read began, or reading resumed
	// after a pause for capacity: Keepalive bounds it from then
	// (frameSource).
	frameStart time.Time
	// arrivals dates the bytes that waited in the socket's receive queue
	// while reading paused or the large lane's reader was held, and
	// frameAt is the stream offset of the frame being read: the reader's.
	arrivals arrivals
	frameAt  int64
	// held samples the receive queue while the reader is held up
	// (holdStarts): on the large lane, or by an Inline handler on the
	// others, where inlineHeld says the frame being routed holds it
	// (runInline). The reader's.
	held       heldSampler
	inlineHeld bool
	// recvDepth is the socket's receive-queue depth last measured, for
	// the end of another connection of the peer's on the lane (end).
	recvDepth atomic.Int64

	backMu  sync.Mutex // serialises back-channel writes
	backBuf []byte
	// backClosed: a finishing Shutdown closed the back channel
	// (closeBack); the reader reads on until the peer closes its side.
	backClosed atomic.Bool
	// Under backMu: the bytes sendBack wrote, and a bound on the back
	// channel's send queue (see backQueueLow).
	backDirect int64
	backBound  queueBound
	beatTimer  *time.Timer

	// mu guards streams and closed, shared by the reader and the grant
	// callbacks of large messages that waited for room.
	mu      sync.Mutex
	streams map[uint32]*largeIn
	closed  bool
	// Under mu: the answers to large messages that waited for room, in
	// the order they were decided, and whether a goroutine writes them
	// (see grantLater).
	later   []laterAnswer
	writing bool

	dispatch dispatchQueue
	// replies writes the responses to its requests back on it; made for
	// the first (answerer), as a connection that carries only one-way
	// messages needs none. repliesMu orders its making with setLimits
	// and end: one made after end is closed at once (repliesEnded).
	replies      atomic.Pointer[replyWriter]
	repliesMu    sync.Mutex
	repliesEnded bool
	// answering counts its requests handed to their handlers and not yet
	// answered (or dropped), for replies.gather.
	answering atomic.Int32
	// waitingRoom says the reader has a frame that waits, or waited, for
	// inbound capacity and is not yet handed on or refused: Shutdown
	// waits for it (readAdmitted).
	waitingRoom atomic.Bool
	// pausedAt is when the reader's pause for room (waitRoom) began, or
	// was last counted in ThrottledTime (monoNanos); 0 when it reads.
	pausedAt atomic.Int64
	// holdsReplies says the reader holds the replies' writer role while
	// it runs Inline handlers (see route), and so writes their responses
	// itself once it has routed the frame. Owned by the reader goroutine.
	holdsReplies bool
	// inlineMu runs the connection's Inline handlers one at a time: the
	// reader runs them, but for an empty large message granted late, run
	// by the goroutine that granted it (see runInline).
	inlineMu sync.Mutex
	// resume is what an Inline handler that ended the reader's goroutine
	// (runtime.Goexit) left of the frame it ran in, for the reader that
	// takes over to do first (reading). The reader's.
	resume func()
}

// readBufferSize is the read buffer of an accepted connection: enough for
// a frame header and small messages in one read; larger payloads are read
// straight into their own buffers.
const readBufferSize = 1 << 10

func newInConn(t *Transport, p *peer, lane routing.Lane, conn net.Conn, caps wire.Capabilities) *inConn {
	ic := &inConn{
		t:         t,
		id:        t.nextConnID.Add(1),
		peer:      p,
		from:      p.id,
		lane:      lane,
		counters:  &p.inbound[lane],
		conn:      conn,
		probe:     t.probeFor(conn),
		account:   p.inAccount.Child(p.laneLimitIn(t.limitsIn.Load(), lane), true),
		done:      make(chan struct{}),
		streams:   make(map[uint32]*largeIn),
		caps:      caps,
		backBound: newQueueBound(conn),
	}
	// The bytes taken from the socket are counted where they leave it,
	// below TLS (arrivals).
	var src io.Reader = countingReader{r: conn, n: &ic.arrivals.read}
	if tc, ok := conn.(*tls.Conn); ok {
		src = conn
		if pc, ok := tc.NetConn().(*prefixConn); ok {
			pc.arr = &ic.arrivals
			ic.arrivals.counted = true
		}
	} else {
		ic.arrivals.counted = true
	}
	ic.src = bufio.NewReaderSize(src, readBufferSize)
	return ic
}

// answerer returns the connection's response writer, made on first use.
func (ic *inConn) answerer() *replyWriter {
	if w := ic.replies.Load(); w != nil {
		return w
	}
	ic.repliesMu.Lock()
	defer ic.repliesMu.Unlock()
	if w := ic.replies.Load(); w != nil {
		return w
	}
	w := newReplyWriter(ic) // under the limits in force (setLimits)
	if ic.repliesEnded {
		w.close() // refuses every response, as end's close would have
	}
	ic.replies.Store(w)
	return w
}

// setLimits sets the connection's limits, inbound and for its responses,
// to those in force.
func (ic *inConn) setLimits() {
	ic.account.SetLimit(ic.peer.laneLimitIn(ic.t.limitsIn.Load(), ic.lane))
	ic.repliesMu.Lock()
	defer ic.repliesMu.Unlock()
	if w := ic.replies.Load(); w != nil {
		w.account.SetLimit(ic.t.limitsOut.Load().forLane(ic.lane))
	}
}

// serve runs the connection until it ends. A connection closed for bad
// input — or for silence longer than Timeouts.Keepalive — is counted and
// logged (rate limited) before it is closed.
func (ic *inConn) serve() {
	ic.peer.cancels.opened() // ended by end
	ic.startBeats()
	defer ic.end()
	// Deferred: if an Inline handler ends this goroutine, the reading
	// goes on in another, and this one, on its way out, waits for it to
	// end before it and its caller end the connection.
	ended := make(chan error, 1)
	defer func() { ic.readingEnded(<-ended) }()
	ic.reading(nil, ended)
}

// reading does resume, if any, then reads the connection until it ends,
// and sends read's error to ended. An Inline handler that ends its
// goroutine (runtime.Goexit, which a recover does not stop) has its
// message answered on the way out (handle), and a new goroutine takes
// over: first the rest of the frame it ran in (ic.resume), then the
// reading. The connection goes on, as it does past a handler's panic.
func (ic *inConn) reading(resume func(), ended chan<- error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if r := recover(); r != nil {
			// Not a handler's (serveMessage recovers theirs): the
			// transport's own, which ends the process as before, once
			// serve no longer waits.
			ended <- errReadingPanicked
			panic(r)
		}
		next := ic.resume
		ic.resume = nil
		// serve waits for it, and Close too: its last act is to tell
		// serve, which may then return before it has.
		ic.t.wg.Add(1)
		go func() {
			defer ic.t.wg.Done()
			ic.reading(next, ended)
		}()
	}()
	if resume != nil {
		resume()
	}
	err := ic.read()
	returned = true
	ended <- err
}

var errReadingPanicked = errors.New("transport: the reader panicked")

// readingEnded counts and logs the error that ended the connection's
// reading, if it was bad input or silence.
func (ic *inConn) readingEnded(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, errWroteBack):
		return // errWroteBack: reported by backFailed
	case ic.backClosed.Load() && badInputOf(err) == BadInputTruncated:
		// closeBack asked the peer to close, which it does where it is,
		// its last frame cut short or not (wire/doc.go, initiator step 6).
		return
	case isTimeout(err):
		select {
		case <-ic.done:
			return // closed here, not silent
		default:
		}
	case isLocalAlert(err):
		// TLS refused the peer's bytes: bad input, counted below.
	case errors.As(err, &ne):
		return // the connection broke
	}
	kind := badInputOf(err)
	ic.t.malformed[kind].Add(1)
	ic.t.logs.warn(logKey{badInput: kind + 1}, "internode: closing connection on bad input", "remote", ic.conn.RemoteAddr(),
		"peer", ic.from, "lane", ic.lane, "err", err)
}

// end closes the connection and gives back what its partial messages held.
func (ic *inConn) end() {
	ic.kill()
	ic.beatTimer.Stop()
	if ic.probe != nil {
		// No socket, no queue: not the dead one's backlog. The peer's
		// other connections on the lane, if any, keep theirs: its Peak
		// is theirs too, and starts each interval from the last reading.
		ic.peer.recvPeak[ic.lane].Observe(ic.t.otherRecvDepth(ic))
	}
	ic.mu.Lock()
	ic.closed = true
	streams := ic.streams
	ic.streams = nil
	ic.mu.Unlock()
	for _, m := range streams {
		ic.abandon(m, ic.t.endReason())
	}
	ic.peer.cancels.ended(ic)
	ic.dispatch.end()
	ic.repliesMu.Lock()
	ic.repliesEnded = true
	w := ic.replies.Load()
	ic.repliesMu.Unlock()
	if w != nil {
		w.close()
	}
}

// kill ends the connection: the reader returns, a wait for capacity gives
// up. The reader may be blocked handing a part to a ReaderHandler that
// does not read: the handler's pipe ends too (it reads
// ErrConnectionReset), or the reader would stay blocked, and its
// connection's partial messages keep their room, for as long as the
// handler does not read.
func (ic *inConn) kill() {
	ic.closeOnce.Do(func() {
		close(ic.done)
		ic.conn.Close()
		ic.mu.Lock()
		for _, m := range ic.streams {
			if m.fed != nil {
				m.fed.CloseWithError(ErrConnectionReset)
			}
		}
		ic.mu.Unlock()
	})
}

// startBeats schedules the next beat (the first went with the handshake's
// reply). The timer is armed only once it is stored: beat reads
// ic.beatTimer, and the timer's Reset is what orders that read after this
// write.
func (ic *inConn) startBeats() {
	ic.beatTimer = time.AfterFunc(time.Hour, ic.beat)
	ic.beatTimer.Reset(wire.KeepaliveInterval)
}

// beat sends a FrameBeat and schedules the next: the sender learns this
// node is alive even while it is not reading.
func (ic *inConn) beat() {
	select {
	case <-ic.done:
		return
	default:
	}
	if err := ic.sendBack(wire.FrameBeat, 0, nil); err != nil {
		ic.backFailed(err)
		return
	}
	if ic.backClosed.Load() {
		return // no beat goes after the end of the back channel
	}
	ic.beatTimer.Reset(wire.KeepaliveInterval)
}

// closeBack closes the connection's sending side, its back channel, for a
// finishing Shutdown (finishInbound), if the connection can close it
// alone: no beat goes after it, a grant or refusal is not written, and a
// response's write fails (counted), while the reader reads on until the
// peer, having read the end, closes its side.
func (ic *inConn) closeBack() {
	ic.backMu.Lock()
	defer ic.backMu.Unlock()
	cw, ok := ic.conn.(interface{ CloseWrite() error })
	if !ok || ic.backClosed.Load() {
		return
	}
	// Set before the close: a write that fails for it is not the peer's
	// doing (backFailed). The beats, which may not have started yet
	// (trackInConn comes before serve), stop at the next (beat).
	ic.backClosed.Store(true)
	if err := cw.CloseWrite(); err != nil {
		ic.backClosed.Store(false)
		ic.kill()
	}
}

// sendBack writes one back-channel frame, within the keepalive timeout
// (Timeouts.Write with the checks off): a sender that does not read its
// back channel is cut off. Once closeBack has closed the back channel it
// writes nothing, and the reader goes on as if it had: the peer, which
// reads the end, never gets the frame.
func (ic *inConn) sendBack(kind wire.FrameKind, stream uint32, payload []byte) error {
	_, err := ic.writeBack(kind, stream, payload)
	return err
}

// writeBack is sendBack, and reports whether the frame was written: not
// once closeBack has closed the back channel.
func (ic *inConn) writeBack(kind wire.FrameKind, stream uint32, payload []byte) (written bool, err error) {
	ic.backMu.Lock()
	defer ic.backMu.Unlock()
	if ic.backClosed.Load() {
		return false, nil
	}
	ic.backBuf = wire.AppendFrameHeader(ic.backBuf[:0], kind, stream, payload)
	ic.backBuf = append(ic.backBuf, payload...)
	// Always set: the socket keeps the deadline of the last write, a
	// response's (replyWriter), which may have passed long ago.
	var deadline time.Time
	if d := ic.t.cfg.Timeouts.Keepalive; d > 0 {
		deadline = time.Now().Add(d)
	} else if d := ic.t.cfg.Timeouts.Write; d > 0 {
		deadline = time.Now().Add(d)
	}
	_ = ic.conn.SetWriteDeadline(deadline)
	n, err := ic.conn.Write(ic.backBuf)
	ic.backDirect += int64(n)
	return true, err
}

// errWroteBack wraps the error of a back-channel write made by the
// connection's reader, reported by backFailed: the peer's input was not
// at fault.
var errWroteBack = errors.New("writing back to the peer")

// backFailed ends the connection after a write into its back channel
// failed. A write that timed out means the peer did not take what this
// node wrote back to it (grants, responses, beats) within the write's
// timeout: it stopped reading, reads too slowly, or the network stopped
// carrying, and it is cut off and said so; a connection that broke is not
// reported, as a read that finds it broken is not.
func (ic *inConn) backFailed(err error) {
	if ic.backClosed.Load() {
		// closeBack closed it: the reader reads on until the peer ends
		// the connection.
		return
	}
	select {
	case <-ic.done: // closed here: its writes fail for that
	default:
		if isTimeout(err) {
			ic.t.logs.warn(logKey{other: logDeafPeer}, "internode: closing connection: the peer does not read what this node writes back",
				"remote", ic.conn.RemoteAddr(), "peer", ic.from, "lane", ic.lane, "err", err)
		}
	}
	ic.kill()
}

// backQueueLow reports whether the back channel's socket has at most
// limit bytes unacknowledged (see queueBound), counting what both its
// writers wrote: sendBack and the reply writer. The caller holds backMu.
func (ic *inConn) backQueueLow(limit int) bool {
	written := ic.backDirect
	if w := ic.replies.Load(); w != nil {
		written += w.frames.written
	}
	return ic.backBound.low(limit, written, ic.probe)
}

// renewReadDeadline gives the next frame Timeouts.Keepalive, header and
// payload: an idle sender pings every wire.KeepaliveInterval, so silence that
// long means it is gone, and a frame trickled slower than that is cut
// off. The deadline is moved only when a quarter of it has passed, to keep
// timer work off the path (awaitFrame makes up for it before a frame). It
// returns the time it read.
func (ic *inConn) renewReadDeadline() time.Time {
	now := time.Now()
	ic.peer.health[ic.lane].read(now.UnixNano()) // the frame before this read, or the handshake
	d := ic.t.cfg.Timeouts.Keepalive
	if d <= 0 {
		return now
	}
	if now.Sub(ic.lastRenew) > d/4 {
		ic.lastRenew = now
		_ = ic.conn.SetReadDeadline(now.Add(d))
	}
	return now
}

// awaitFrame waits for the first byte of the next frame, for as long as
// Keepalive since heard, when the frame before it was done with. The
// deadline it waits on may have been set up to a quarter of Keepalive
// before then (renewReadDeadline moves it only once a quarter has
// passed): reached sooner, it is pushed back to heard + Keepalive and the
// wait goes on (deadlineEarly), or a peer silent for less than Keepalive
// — which the wire format lets it be — would be judged gone.
func (ic *inConn) awaitFrame(heard time.Time) error {
	for {
		_, err := ic.src.Peek(1)
		if err == nil || !ic.deadlineEarly(err, heard) {
			return err
		}
	}
}

// frameSource reads the frame being read from ic.src for as long as
// Keepalive from when it began (frameStart): the read deadline may have
// been set up to a quarter of Keepalive before then (renewReadDeadline),
// and a frame that arrives within Keepalive is not cut off.
type frameSource struct{ ic *inConn }

func (s frameSource) Read(b []byte) (int, error) {
	for {
		n, err := s.ic.src.Read(b)
		if err == nil || !s.ic.deadlineEarly(err, s.ic.frameStart) {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// deadlineEarly reports whether err is the read deadline passing before
// Keepalive from since, and if so pushes it back to since + Keepalive:
// the read goes on. A deadline reached after that, or a connection ended
// here, is what it is.
func (ic *inConn) deadlineEarly(err error, since time.Time) bool {
	d := ic.t.cfg.Timeouts.Keepalive
	if d <= 0 || !isTimeout(err) {
		return false
	}
	select {
	case <-ic.done:
		return false
	default:
	}
	until := since.Add(d)
	if !time.Now().Before(until) {
		return false // the whole of Keepalive
	}
	ic.lastRenew = since
	_ = ic.conn.SetReadDeadline(until)
	return true
}

// measureRecvQueue records the socket's receive-queue depth after a read
// of n bytes, when the reader's sampler says it is worth an ioctl (see
// sockstat.Sampler); paused says reading had stopped, so the queue may be
// at a peak.
func (ic *inConn) measureRecvQueue(n int, paused bool) {
	if ic.probe == nil || !ic.t.measuring() || !ic.sampler.Due(n, paused) {
		return
	}
	if depth, err := ic.probe.RecvQueue(); err == nil {
		ic.recordRecvQueue(depth)
	}
}

// recordRecvQueue records a reading of the socket's receive-queue depth.
func (ic *inConn) recordRecvQueue(depth int) {
	ic.sampler.Record(depth, 0)
	ic.recvDepth.Store(int64(depth))
	ic.peer.recvPeak[ic.lane].Observe(int64(depth))
	ic.peer.recvMax[ic.lane].Observe(int64(depth))
	ic.peer.measured(ic.lane)
}

// otherRecvDepth is the deepest receive queue last measured on the
// connections of ic's peer and lane other than ic: 0 when there are none.
func (t *Transport) otherRecvDepth(ic *inConn) int64 {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	var depth int64
	for o := range t.inConns {
		if o != ic && o.peer == ic.peer && o.lane == ic.lane {
			depth = max(depth, o.recvDepth.Load())
		}
	}
	return depth
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
