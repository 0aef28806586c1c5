package transport

import (
	"context"
	"errors"
	"go.opentelemetry.io/otel/metric"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/backoff"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// outConn is one lane of one peer: a queue and the single goroutine that
// writes it to a TCP connection, dialling lazily, reconnecting with backoff
// while messages are pending and closing the socket when idle.
type outConn struct {
	t     *Transport
	peer  *peer
	lane  routing.Lane
	queue outQueue
	tiers limit.Tiered  // this lane's capacity, then the peer's and node's outbound reserves
	wake  chan struct{} // one slot: "work arrived"
	// signaled is set by the producer that puts a token in wake and
	// cleared by the writer when it takes it, so producers skip the
	// channel while the writer already knows there is work.
	signaled atomic.Bool
	stop     chan struct{}   // closed to make the writer exit
	ctx      context.Context // cancelled with stop: ends a dial in progress
	cancel   context.CancelFunc
	done     chan struct{} // closed when the writer has exited
	counters connCounters
	// live mirrors conn for other goroutines: Stats reads whether it is
	// set, and peer.stop closes it so that a writer blocked in a write to
	// a peer that stopped reading is released.
	live atomic.Pointer[liveConn]

	// strategyMu guards strategy: the writer calls it, Stats reads it and
	// SetCoalescing replaces it.
	strategyMu sync.Mutex
	strategy   coalescing.Strategy

	attrs     metric.MeasurementOption // this lane's metric attributes
	waitTimer *time.Timer              // coalescing waits; stopped when unused

	// Owned by the writer goroutine.
	conn    *liveConn
	backoff backoff.Backoff
	random  *rand.Rand
	vec     net.Buffers
	headers []byte
	large   largeWriter
}

// liveConn is an established, handshaken connection. Its watcher marks it
// dead as soon as the peer closes it, so the writer redials instead of
// writing into a socket that would silently swallow the next batch.
type liveConn struct {
	net.Conn
	dead  atomic.Bool
	probe *sockstat.Probe // nil when socket measurement is off
}

func newOutConn(t *Transport, p *peer, lane routing.Lane) *outConn {
	c := &outConn{
		t:         t,
		peer:      p,
		lane:      lane,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		strategy:  (*t.coalescing.Load())(lane),
		waitTimer: newStoppedTimer(),
		attrs:     connAttrs(p.id, lane),
	}
	c.ctx, c.cancel = context.WithCancel(t.ctx)
	c.tiers = limit.Tiered{Own: limit.New(t.cfg.Outbound.PerConnection), Peer: p.outReserve, Node: t.outReserve}
	c.backoff = backoff.Backoff{Min: t.cfg.ReconnectMinBackoff, Max: t.cfg.ReconnectMaxBackoff}
	c.random = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	return c
}

// enqueue takes capacity for one message and queues it for the writer.
// With wait it waits for capacity until ctx ends; otherwise it fails at once
// with ErrOverloaded.
func (c *outConn) enqueue(ctx context.Context, h *wire.Header, payload []byte, isRequest, wait bool, now time.Time) error {
	isResponse := h.Flags&wire.FlagResponse != 0
	var stack [64]byte
	header := wire.AppendHeader(stack[:0], h)
	size := int64(len(header) + len(payload))
	grant, ok := c.tiers.TryAllocate(size)
	if !ok {
		if !wait {
			return ErrOverloaded
		}
		if grant, ok = c.tiers.Wait(size, ctx.Done(), c.stop); !ok {
			if err := ctx.Err(); err != nil {
				return err
			}
			return c.peer.stopErr()
		}
	}
	it := outItem{id: h.ID, expiresAt: h.ExpiresAt, enqueuedAt: now, isRequest: isRequest, isResponse: isResponse, grant: grant}
	if err := c.queue.push(it, header, payload, c.lane != routing.Large); err != nil {
		c.tiers.Release(grant)
		return err
	}
	if !c.signaled.Load() && c.signaled.CompareAndSwap(false, true) {
		c.signal()
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

// release recycles a batch and gives back its capacity.
func (c *outConn) release(b *batch) { c.tiers.Release(c.queue.release(b)) }

// failQueued fails every message still queued with err.
func (c *outConn) failQueued(err error) {
	for {
		b, _ := c.queue.take()
		if b == nil {
			return
		}
		c.failBatch(b, err)
	}
}

// run is the writer goroutine.
func (c *outConn) run() {
	defer close(c.done)
	defer c.teardown()
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	lastWrite := time.Now()
	for {
		if n, _ := c.queue.pending(); n == 0 && c.large.idle() {
			c.t.signalDrained()
			idle.Reset(c.idleIn(lastWrite))
			select {
			case <-c.stop:
				return
			case <-c.wake:
				c.signaled.Store(false) // then look at the queue again
				if c.conn != nil && c.conn.dead.Load() {
					c.closeConn("closed by peer")
				}
			case <-idle.C:
				if c.conn != nil && c.t.cfg.IdleTimeout > 0 && time.Since(lastWrite) >= c.t.cfg.IdleTimeout {
					c.closeConn("idle")
				}
			}
			continue
		}
		if c.conn == nil || c.conn.dead.Load() {
			if c.conn != nil {
				c.closeConn("closed by peer")
			}
			if !c.connect() {
				if !c.sleepBackoff() {
					return
				}
				continue
			}
		}
		if err := c.flush(); err != nil {
			c.t.log.Warn("internode: write failed", "peer", c.peer.id, "lane", c.lane, "err", err)
			c.closeConn("write error")
		}
		lastWrite = time.Now()
	}
}

func (c *outConn) idleIn(lastWrite time.Time) time.Duration {
	if c.conn == nil || c.t.cfg.IdleTimeout <= 0 {
		return time.Hour
	}
	return max(c.t.cfg.IdleTimeout-time.Since(lastWrite), time.Millisecond)
}

// flush writes what is queued: on small lanes after the coalescing wait, as
// batch frames; on the large lane, interleaved parts of large messages.
func (c *outConn) flush() error {
	if c.lane == routing.Large {
		return c.large.step(c)
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
	defer c.release(b)
	c.strategyMu.Lock()
	for i := observed; i < len(b.items); i++ {
		c.strategy.Observe(b.items[i].enqueuedAt, b.items[i].size())
	}
	c.strategyMu.Unlock()
	sent, sentBytes, err := c.writeBatch(b)
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
	messages, bytes := c.queue.observeNew(func(it *outItem) { c.strategy.Observe(it.enqueuedAt, it.size()) })
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

// writeBatch frames the batch's live messages (expired ones are dropped
// and counted) and writes them with one vectored write.
func (c *outConn) writeBatch(b *batch) (messages, bytes int, err error) {
	now := time.Now().UnixNano()
	responses := 0
	maxFrame := c.t.maxFrame
	buf := b.buf.B
	if need := wire.FrameHeaderSize * (len(b.items) + len(buf)/maxFrame + 1); cap(c.headers) < need {
		c.headers = make([]byte, 0, need) // never grows below: frames alias it
	}
	headers := c.headers[:0]
	vec := c.vec[:0]
	frameStart, frameEnd := -1, -1
	closeFrame := func() {
		if frameStart < 0 {
			return
		}
		payload := buf[frameStart:frameEnd]
		headers = wire.AppendFrameHeader(headers, wire.FrameBatch, 0, payload)
		vec = append(vec, headers[len(headers)-wire.FrameHeaderSize:], payload)
		frameStart = -1
	}
	for i := range b.items {
		it := &b.items[i]
		if it.expired(now) {
			closeFrame()
			c.fail(it, buf[it.start:it.end], nil, ErrExpired)
			continue
		}
		if frameStart >= 0 && (it.start != frameEnd || it.end-frameStart > maxFrame) {
			closeFrame()
		}
		if frameStart < 0 {
			frameStart = it.start
		}
		frameEnd = it.end
		if it.isResponse {
			responses++
		}
		messages++
		bytes += it.end - it.start
	}
	closeFrame()
	if len(vec) == 0 {
		return 0, 0, nil
	}
	written := net.Buffers(vec)
	_, err = written.WriteTo(c.conn.Conn) // the bare connection: net.Buffers uses writev only on it
	clear(vec)
	c.vec = vec[:0]
	if err != nil {
		for i := range b.items {
			if !b.items[i].expired(now) {
				c.fail(&b.items[i], buf[b.items[i].start:b.items[i].end], nil, ErrConnectionReset)
			}
		}
		return 0, 0, err
	}
	c.counters.writes.Add(1)
	c.measureSendQueue()
	c.counters.sent.Add(uint64(messages))
	c.counters.responses.Add(uint64(responses))
	c.counters.sentBytes.Add(uint64(bytes))
	return messages, bytes, nil
}

// measureSendQueue records the socket's send-queue depth after a write.
func (c *outConn) measureSendQueue() {
	if c.conn.probe == nil {
		return
	}
	if n, err := c.conn.probe.SendQueue(); err == nil {
		c.peer.sendPeak[c.lane].Observe(int64(n))
		c.peer.sendMax[c.lane].Observe(int64(n))
	}
}

// fail records a message that will not be sent, fails its request and
// tells Config.OnDropped. encoded is the message's encoding (header, then
// payload unless payload is given apart).
func (c *outConn) fail(it *outItem, encoded, payload []byte, err error) {
	reason := reasonOf(err)
	c.counters.dropped[reason].Add(1)
	if it.isRequest {
		if err == ErrExpired {
			// A request expires at its context's deadline.
			err = errRequestExpired
		}
		c.t.calls.fail(it.id, &OpError{Op: "request", Peer: c.peer.id, Lane: c.lane, Err: err})
	}
	if hook := c.t.cfg.OnDropped; hook != nil {
		h, n, derr := wire.DecodeHeader(encoded, uint32(c.t.cfg.MaxMessageSize))
		if derr != nil {
			panic("transport: undecodable queued message: " + derr.Error()) // we encoded it
		}
		if payload == nil {
			payload = encoded[n:]
		}
		hook(DroppedMessage{Peer: c.peer.id, Lane: c.lane, Verb: Verb(h.Verb), ID: h.ID,
			Response: h.Flags&wire.FlagResponse != 0, Reason: reason, Payload: payload})
	}
}

// failBatch fails every message of b with err and releases it.
func (c *outConn) failBatch(b *batch, err error) {
	for i := range b.items {
		it := &b.items[i]
		c.fail(it, b.buf.B[it.start:it.end], it.payload, err)
	}
	c.release(b)
}

// connect dials and handshakes. On failure it fails what cannot wait and
// reports false.
func (c *outConn) connect() bool {
	conn, err := c.dial()
	if err == nil {
		c.conn = conn
		c.live.Store(conn)
		select {
		case <-c.stop: // stopped while dialling: peer.stop missed this one
			conn.Close()
		default:
		}
		c.backoff.Reset()
		c.counters.connects.Add(1)
		c.t.wg.Add(1)
		go c.watch(conn)
		return true
	}
	c.counters.connectFailures.Add(1)
	c.t.log.Debug("internode: connect failed", "peer", c.peer.id, "lane", c.lane, "err", err)
	switch {
	case errors.Is(err, ErrRefused), errors.Is(err, ErrUnknownPeer):
		// Waiting will not help: fail what is queued now.
		c.failQueued(err)
		c.large.failAll(c, err)
	default:
		c.pruneExpired()
	}
	return false
}

func (c *outConn) dial() (*liveConn, error) {
	nc, err := c.t.dial(c.ctx, c.peer.id, uint8(c.lane))
	if err != nil {
		return nil, err
	}
	return &liveConn{Conn: nc, probe: c.t.probeFor(nc)}, nil
}

// watch reads the write-only connection: the peer never sends on it, so any
// return from Read means the connection is gone.
func (c *outConn) watch(conn *liveConn) {
	defer c.t.wg.Done()
	var b [1]byte
	_, _ = conn.Read(b[:])
	conn.dead.Store(true)
	conn.Close()
	c.signal()
}

func (c *outConn) closeConn(why string) {
	if c.conn == nil {
		return
	}
	c.t.log.Debug("internode: connection closed", "peer", c.peer.id, "lane", c.lane, "why", why)
	c.conn.dead.Store(true)
	c.conn.Close()
	c.conn = nil
	c.live.Store(nil)
	c.large.reset(c)
}

// sleepBackoff waits before the next connection attempt: capped
// exponential with jitter. It reports false when the writer must stop.
func (c *outConn) sleepBackoff() bool {
	d := c.backoff.Next(c.random)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-c.stop:
		return false
	case <-timer.C:
		return true
	}
}

// pruneExpired fails queued messages whose deadline has passed, keeping the
// rest in order. It runs while no connection can be had.
func (c *outConn) pruneExpired() {
	now := time.Now().UnixNano()
	c.large.pruneExpired(c, now)
	c.queue.prune(func(it *outItem, encoded []byte) bool {
		if !it.expired(now) {
			return false
		}
		c.fail(it, encoded, it.payload, ErrExpired)
		c.tiers.Release(it.grant)
		return true
	})
}

// teardown runs when the writer exits: everything still queued fails with
// the transport's reason for stopping.
func (c *outConn) teardown() {
	err := c.peer.stopErr()
	for _, b := range c.queue.shut(err) {
		c.failBatch(b, err)
	}
	c.large.failAll(c, err)
	c.closeConn("stopped")
}
