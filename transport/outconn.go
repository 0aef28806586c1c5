package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/backoff"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// outConn is one lane of one peer: a queue and the goroutine that writes
// it to a TCP connection (the writer), dialling lazily, reconnecting with
// backoff while messages are pending, pinging while idle and closing the
// socket after IdleTimeout. The writer runs while the lane has work or a
// connection, and exits once the connection is closed and nothing is
// queued; the next message starts it again.
type outConn struct {
	t       *Transport
	peer    *peer
	lane    routing.Lane
	queue   outQueue
	account *limit.Account // this lane's share of the peer's outbound budget
	wake    chan struct{}  // one slot: "work arrived"
	// signaled is set by the producer that puts a token in wake and
	// cleared by the writer when it takes it, so producers skip the
	// channel while the writer already knows there is work.
	signaled atomic.Bool
	kick     chan struct{}   // one slot: the peer is back, redial now
	stop     chan struct{}   // closed to make the writer exit
	ctx      context.Context // cancelled with stop: ends a dial in progress
	cancel   context.CancelFunc
	counters *connCounters // the peer's for this lane: they outlive the connection
	// running says a writer goroutine exists; started and stopped under
	// peer.mu, with done closed when it exits.
	running atomic.Bool
	done    chan struct{}
	// live mirrors conn for other goroutines: Stats reads whether it is
	// set, and peer.stop closes it so that a writer blocked in a write to
	// a peer that stopped reading is released.
	live atomic.Pointer[liveConn]
	// dialCancel ends the dial in progress, for a kick.
	dialMu     sync.Mutex
	dialCancel context.CancelFunc
	dialStart  time.Time

	// strategyMu guards strategy: the writer calls it, Stats reads it and
	// SetCoalescing replaces it.
	strategyMu sync.Mutex
	strategy   coalescing.Strategy

	attrs     metric.MeasurementOption // this lane's metric attributes
	waitTimer *time.Timer              // coalescing waits; stopped when unused

	// Owned by the writer goroutine.
	conn       *liveConn
	idleClosed bool // the last connection was closed for being idle
	backoff    backoff.Backoff
	random     *rand.Rand
	frames     frameWriter
	large      largeWriter
	lastWrite  time.Time
}

// liveConn is an established, handshaken connection. Its back-channel
// reader marks it dead as soon as the peer closes it or falls silent, so
// the writer redials instead of writing into a socket that would swallow
// the next batch.
type liveConn struct {
	net.Conn
	serial uint64 // unique among the transport's connections
	dead   atomic.Bool
	// heard is when the back channel last carried a frame (Unix ns).
	heard atomic.Int64
	// backHeader is the back-channel reader's buffer.
	backHeader [wire.FrameHeaderSize]byte
	why        atomic.Pointer[string]
	probe      *sockstat.Probe // nil when socket measurement is off
}

// kill marks the connection dead, with why, and closes it.
func (lc *liveConn) kill(why string) {
	if lc.dead.CompareAndSwap(false, true) {
		lc.why.Store(&why)
	}
	lc.Close()
}

func newOutConn(t *Transport, p *peer, lane routing.Lane) *outConn {
	c := &outConn{
		t:         t,
		peer:      p,
		lane:      lane,
		wake:      make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		strategy:  (*t.coalescing.Load())(lane),
		waitTimer: newStoppedTimer(),
		attrs:     t.tel.connAttrs(p, lane),
	}
	c.counters = &p.outbound[lane]
	c.ctx, c.cancel = context.WithCancel(t.ctx)
	c.account = p.outAccount.Child(t.limitsOut.Load().forLane(lane), true)
	c.backoff = backoff.Backoff{Min: t.cfg.Reconnect.MinBackoff, Max: t.cfg.Reconnect.MaxBackoff}
	c.random = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	return c
}

// enqueue takes capacity for one message and queues it for the writer.
// With wait it waits for capacity until ctx ends; otherwise it fails at
// once with ErrOverloaded.
func (c *outConn) enqueue(ctx context.Context, it outItem, header, payload []byte, wait bool) error {
	size := int64(len(header) + len(payload) + outItemCost)
	if !c.account.TryTake(size) {
		if !wait {
			return ErrOverloaded
		}
		if !c.account.Wait(size, ctx.Done(), c.stop) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := c.peer.stopErrIfStopped(); err != nil {
				return err
			}
			return ErrOverloaded // can never fit under the current limits
		}
	}
	if err := c.queue.push(it, header, payload, c.lane != routing.Large); err != nil {
		c.account.Release(size)
		return err
	}
	if !c.signaled.Load() && c.signaled.CompareAndSwap(false, true) {
		c.signal()
	}
	if !c.running.Load() {
		c.peer.startWriter(c)
	}
	return nil
}

// signal puts a token in wake unless one is there.
func (c *outConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// dropIfSilent kills the lane's connection when its peer has not been
// heard on it for two keepalive intervals: the peer just opened a new
// connection to this node, which it does when it judged its own dead, so
// this one has likely died the same way and must not carry a response
// into the void.
func (c *outConn) dropIfSilent() {
	if lc := c.live.Load(); lc != nil && time.Since(time.Unix(0, lc.heard.Load())) > 2*wire.KeepaliveInterval {
		lc.kill("peer silent and back on a new connection")
		c.signal()
	}
}

// redialNow makes a writer that waits to reconnect, or is dialling, try
// again at once: the peer is back.
func (c *outConn) redialNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
	c.dialMu.Lock()
	if c.dialCancel != nil && time.Since(c.dialStart) > staleDial {
		c.dialCancel()
	}
	c.dialMu.Unlock()
}

// staleDial is how long a dial may have been going when the peer is seen
// again before it is restarted: by then its SYN was likely lost, and the
// kernel would wait a second or more before sending another.
const staleDial = 250 * time.Millisecond

// hasWork reports whether the writer has something to write.
func (c *outConn) hasWork() bool {
	if n, _ := c.queue.pending(); n > 0 {
		return true
	}
	return c.lane == routing.Large && c.large.busy(time.Now().UnixNano())
}

// run is the writer goroutine.
func (c *outConn) run() {
	defer c.t.wg.Done()
	c.lastWrite = time.Now()
	for {
		select {
		case <-c.stop:
			c.closeConn("stopped")
			c.peer.writerExited(c)
			return
		default:
		}
		if c.conn != nil && c.conn.dead.Load() {
			c.connDied()
		}
		if !c.hasWork() {
			if c.conn == nil && c.large.idle() && c.peer.writerMayExit(c) {
				return
			}
			c.t.signalDrained()
			c.idle()
			continue
		}
		if c.conn == nil {
			if !c.connect() {
				c.sleepBackoff()
				continue
			}
		}
		if err := c.flush(); err != nil {
			c.t.log.Debug("internode: write failed", "peer", c.peer.id, "lane", c.lane, "err", err)
			c.conn.kill("write error")
		}
	}
}

// idle waits for work while the lane has none: it pings the peer when
// nothing was written for a keepalive interval, closes the connection
// after IdleTimeout, and wakes at least every interval to withdraw large
// messages that expired while waiting for a grant.
func (c *outConn) idle() {
	cfg := &c.t.cfg
	wait := time.Hour
	if c.conn != nil {
		if cfg.Timeouts.Keepalive > 0 {
			wait = max(wire.KeepaliveInterval-time.Since(c.lastWrite), 0)
		}
		if cfg.Timeouts.Idle > 0 && c.large.idle() {
			wait = min(wait, max(cfg.Timeouts.Idle-time.Since(c.lastWrite), 0))
		}
	}
	if c.lane == routing.Large && !c.large.idle() {
		wait = min(wait, wire.KeepaliveInterval)
	}
	timer := c.waitTimer
	timer.Reset(wait)
	defer stopTimer(timer)
	select {
	case <-c.stop:
		return
	case <-c.wake:
		c.signaled.Store(false)
		return
	case <-timer.C:
	}
	if c.lane == routing.Large && !c.large.idle() {
		c.large.pruneExpired(&c.queue, time.Now().UnixNano(), c) // begun ones: by the next step
	}
	if c.conn == nil {
		return
	}
	switch since := time.Since(c.lastWrite); {
	case cfg.Timeouts.Idle > 0 && since >= cfg.Timeouts.Idle && c.large.idle():
		c.closeConn("idle")
		c.idleClosed = true
	case cfg.Timeouts.Keepalive > 0 && since >= wire.KeepaliveInterval:
		c.setWriteDeadline()
		if err := c.frames.writePing(c.conn.Conn); err != nil {
			c.conn.kill("ping failed")
			return
		}
		c.lastWrite = time.Now()
	}
}

// setWriteDeadline bounds the next write: a peer that stops reading for
// WriteTimeout is disconnected, and what was being written fails.
func (c *outConn) setWriteDeadline() {
	if d := c.t.cfg.Timeouts.Write; d > 0 {
		_ = c.conn.SetWriteDeadline(time.Now().Add(d))
	}
}

// flush writes what is queued: on small lanes after the coalescing wait,
// as batch frames; on the large lane, a round of the large writer.
func (c *outConn) flush() error {
	c.setWriteDeadline()
	defer func() { c.lastWrite = time.Now() }()
	if c.lane == routing.Large {
		return c.large.step(c.conn.Conn, &c.frames, &c.queue, c.t.maxFrame, time.Now().UnixNano(), c)
	}
	requested := c.askWait()
	var waited time.Duration
	if requested > 0 {
		waited = c.coalesceWait(requested)
	}
	b, observed := c.queue.take()
	if b == nil {
		return nil
	}
	defer func() { c.release(c.queue.release(b)) }()
	c.strategyMu.Lock()
	for i := observed; i < len(b.items); i++ {
		c.strategy.Observe(b.items[i].enqueued(), b.items[i].size())
	}
	c.strategyMu.Unlock()
	sent, sentBytes, err := c.frames.writeBatch(c.conn.Conn, b, c.t.maxFrame, time.Now().UnixNano(), c)
	if err == nil && sent > 0 {
		c.t.tel.recordFlush(c.attrs, sent, waited)
	}
	c.strategyMu.Lock()
	c.strategy.Flushed(time.Now(), sent, sentBytes, requested, waited)
	c.strategyMu.Unlock()
	return err
}

// askWait shows the strategy the messages queued since it last looked,
// then asks it how long to wait given what is pending now.
func (c *outConn) askWait() time.Duration {
	c.strategyMu.Lock()
	defer c.strategyMu.Unlock()
	messages, bytes := c.queue.observeNew(func(it *outItem) { c.strategy.Observe(it.enqueued(), it.size()) })
	wait := c.strategy.Wait(time.Now(), messages, bytes)
	if c.t.closing.Load() {
		return 0 // draining for Shutdown: no more waiting to coalesce
	}
	return wait
}

// setStrategy replaces the lane's coalescing strategy.
func (c *outConn) setStrategy(s coalescing.Strategy) {
	c.strategyMu.Lock()
	c.strategy = s
	c.strategyMu.Unlock()
}

// coalesceWait waits up to d for more messages, returning early when the
// strategy says the batch is worth sending, and reports how long it waited.
// Short waits spin (yielding the processor) because timers overshoot them.
func (c *outConn) coalesceWait(d time.Duration) time.Duration {
	start := time.Now()
	deadline := start.Add(d)
	// Waits shorter than this yield the processor in a loop; longer ones
	// sleep on the timer and spin their last stretch. Timers on a quiet
	// process wake late (up to a millisecond), but spinning longer costs
	// the producers their processor: on two cores, yielding through
	// 250 us made the coalesce bench's p99 3.5 ms worse than Disabled.
	const spinBelow = 20 * time.Microsecond
	var timer *time.Timer
	for {
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			break
		}
		if left < spinBelow {
		spin:
			for time.Now().Before(deadline) {
				runtime.Gosched()
				select {
				case <-c.wake:
					c.signaled.Store(false)
					if c.askWait() == 0 { // enough arrived to write now
						break spin
					}
				default:
				}
			}
			break
		}
		if timer == nil {
			timer = c.waitTimer
			timer.Reset(left - spinBelow/2)
			defer stopTimer(timer)
		}
		select {
		case <-c.stop:
			return time.Since(start)
		case <-c.t.draining:
			return time.Since(start) // Shutdown: flush at once
		case <-timer.C:
			timer.Reset(time.Hour)
			continue
		case <-c.wake:
			c.signaled.Store(false)
			if c.askWait() == 0 {
				return time.Since(start)
			}
		}
	}
	return time.Since(start)
}

func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// stopTimer stops t so it can be Reset again (Go 1.23 timers need no
// draining).
func stopTimer(t *time.Timer) { t.Stop() }

// wrote counts one write (outSink).
func (c *outConn) wrote(messages, bytes, responses int) {
	c.counters.writes.Add(1)
	c.counters.sent.Add(uint64(messages))
	c.counters.responses.Add(uint64(responses))
	c.counters.sentBytes.Add(uint64(bytes))
	c.measureSendQueue()
}

// release gives back outbound capacity (outSink).
func (c *outConn) release(n int64) { c.account.Release(n) }

// requestWritten notes the connection a request went out on (outSink).
func (c *outConn) requestWritten(id uint64) { c.t.calls.written(id, c.conn.serial) }

// failed records a message that will not be written, fails its request
// and tells Config.OnDropped (outSink). It is the one place an outbound
// message fails once it was queued.
func (c *outConn) failed(m *outMsg, reason Reason, err error) {
	c.counters.dropped[reason].Add(1)
	if m.isRequest {
		switch {
		case err == nil && reason == ReasonExpired:
			err = errRequestExpired // a request expires at its context's deadline
		case err == nil:
			err = reason.Err()
		case !errors.Is(err, reason.Err()):
			err = fmt.Errorf("%w: %w", reason.Err(), err) // a socket's error, say
		}
		c.t.calls.fail(m.id, &OpError{Op: "request", Peer: c.peer.id, Lane: c.lane, Err: err})
	}
	if hook := c.t.cfg.OnDropped; hook != nil {
		hook(DroppedMessage{Peer: c.peer.id, Lane: c.lane, Verb: Verb(m.verb), ID: m.id,
			Response: m.isResponse, Reason: reason, Payload: m.payload})
	}
}

// failQueued fails every message queued or in flight with reason.
func (c *outConn) failQueued(reason Reason, err error) {
	for {
		b, _ := c.queue.take()
		if b == nil {
			break
		}
		c.failBatch(b, reason, err)
	}
	c.large.failAll(&c.queue, reason, err, c)
}

// failBatch fails every message of b and releases it.
func (c *outConn) failBatch(b *batch, reason Reason, err error) {
	for i := range b.items {
		m := b.items[i].msg(b.buf.B)
		c.failed(&m, reason, err)
	}
	c.release(c.queue.release(b))
}

// measureSendQueue records the socket's send-queue depth after a write.
func (c *outConn) measureSendQueue() {
	if c.conn == nil || c.conn.probe == nil {
		return
	}
	if n, err := c.conn.probe.SendQueue(); err == nil {
		c.peer.sendPeak[c.lane].Observe(int64(n))
		c.peer.sendMax[c.lane].Observe(int64(n))
	}
}

// connect dials and handshakes. On failure it fails what cannot wait and
// reports false.
func (c *outConn) connect() bool {
	conn, err := c.dial()
	c.idleClosed = false
	if err == nil {
		c.conn = conn
		c.live.Store(conn)
		select {
		case <-c.stop: // stopped while dialling: peer.stop missed this one
			conn.kill("stopped")
		default:
		}
		c.backoff.Reset()
		c.counters.connects.Add(1)
		c.lastWrite = time.Now()
		c.t.wg.Add(1)
		go c.readBack(conn)
		return true
	}
	c.counters.connectFailures.Add(1)
	c.t.log.Debug("internode: connect failed", "peer", c.peer.id, "lane", c.lane, "err", err)
	switch {
	case errors.Is(err, ErrRefused), errors.Is(err, ErrUnknownPeer):
		// Waiting will not help: fail what is queued now.
		c.failQueued(reasonOf(err), err)
	default:
		c.pruneExpired()
	}
	return false
}

func (c *outConn) dial() (*liveConn, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.dialMu.Lock()
	c.dialCancel, c.dialStart = cancel, time.Now()
	c.dialMu.Unlock()
	defer func() {
		c.dialMu.Lock()
		c.dialCancel = nil
		c.dialMu.Unlock()
		cancel()
	}()
	nc, err := c.t.dial(ctx, c.peer.id, uint8(c.lane))
	if err != nil {
		return nil, err
	}
	lc := &liveConn{Conn: nc, serial: c.t.nextConnID.Add(1), probe: c.t.probeFor(nc)}
	lc.heard.Store(time.Now().UnixNano())
	return lc, nil
}

// readBack reads the connection's back channel: the acceptor's beats,
// and on the large lane its grants and refusals. Silence longer than
// KeepaliveTimeout, a frame it may not send, or the connection ending
// marks the connection dead and wakes the writer.
func (c *outConn) readBack(conn *liveConn) {
	defer c.t.wg.Done()
	why := c.readBackFrames(conn)
	conn.kill(why)
	c.signal()
}

func (c *outConn) readBackFrames(conn *liveConn) string {
	timeout := c.t.cfg.Timeouts.Keepalive
	hdr := conn.backHeader[:]
	const maxBody = wire.MaxFailureMessage + 16 // a refusal's Failure
	for {
		if timeout > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(timeout))
		}
		if _, err := io.ReadFull(conn, hdr); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Sprintf("peer silent for %v", timeout)
			}
			return "closed by peer"
		}
		fh, err := wire.ParseFrameHeader(hdr, maxBody)
		if err == nil && (!fh.Kind.FromAcceptor() || fh.Kind != wire.FrameBeat && c.lane != routing.Large) {
			err = fmt.Errorf("%w: %v frame from the acceptor of a %s lane", wire.ErrMalformed, fh.Kind, c.lane)
		}
		var body []byte // only refusals have one: allocated for them
		if err == nil {
			body = make([]byte, fh.Length)
			_, err = io.ReadFull(conn, body)
			if err == nil {
				err = fh.Verify(body)
			}
		}
		if err != nil {
			c.t.logs.warn(logKey{other: logBadBackChannel}, "internode: closing connection on bad input from its acceptor",
				"peer", c.peer.id, "lane", c.lane, "err", err)
			return "bad back-channel input"
		}
		conn.heard.Store(time.Now().UnixNano())
		switch fh.Kind {
		case wire.FrameGrant:
			c.large.deliver(backFrame{stream: fh.Stream})
		case wire.FrameRefuse:
			f, err := wire.DecodeFailure(body)
			if err != nil {
				return "bad refusal"
			}
			c.large.deliver(backFrame{stream: fh.Stream, refused: &f})
		default:
			continue // a beat
		}
		c.signal()
	}
}

// closeConn closes the connection, if any; begun large messages without a
// payload byte written wait for the next one, the others fail.
func (c *outConn) closeConn(why string) {
	if c.conn == nil {
		return
	}
	if why == "" {
		if w := c.conn.why.Load(); w != nil {
			why = *w
		}
	}
	c.t.log.Debug("internode: connection closed", "peer", c.peer.id, "lane", c.lane, "why", why)
	c.conn.kill(why)
	c.conn = nil
	c.live.Store(nil)
	c.large.reset(&c.queue, c, ErrConnectionReset)
}

// connDied closes a connection that broke or was judged dead. Requests
// written on it fail at once — their response may never come, and a
// request cannot be resent blindly — and the lane redials at once.
func (c *outConn) connDied() {
	serial, why := c.conn.serial, "closed"
	if w := c.conn.why.Load(); w != nil {
		why = *w
	}
	c.closeConn(why)
	c.t.calls.failConn(serial, fmt.Errorf("%w: %s", ErrConnectionReset, why))
	c.backoff.Reset()
}

// sleepBackoff waits before the next connection attempt: capped
// exponential with jitter, cut short when the peer is seen again.
func (c *outConn) sleepBackoff() {
	d := c.backoff.Next(c.random)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-c.stop:
	case <-timer.C:
	case <-c.kick:
		c.backoff.Reset()
	}
}

// pruneExpired fails queued messages whose deadline has passed, keeping the
// rest in order. It runs while no connection can be had.
func (c *outConn) pruneExpired() {
	now := time.Now().UnixNano()
	if c.lane == routing.Large {
		c.large.admit(&c.queue)
		c.large.pruneExpired(&c.queue, now, c)
	}
	removed := c.queue.prune(func(it *outItem, buf []byte) bool {
		if !it.expired(now) {
			return false
		}
		m := it.msg(buf)
		c.failed(&m, ReasonExpired, nil)
		return true
	})
	c.release(removed)
}
