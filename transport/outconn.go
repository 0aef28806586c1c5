package transport

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/backoff"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/precisetimer"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// outConn is one lane of one peer: a queue and the goroutine that writes
// it to a TCP connection (the writer), dialling lazily, reconnecting with
// backoff while messages are pending, pinging while idle and closing the
// socket after Timeouts.Idle. The writer runs while the lane has work,
// and exits once nothing is queued: at once when the connection is
// closed, after writerLinger quiet when it is open (parkIdle). The next
// message starts it again, and so, on an open connection, do a timer when
// a ping or the idle close is due, and the back channel when it needs the
// writer (wakeWriter).
//
// Writing is a role, writeMu, that the writer goroutine holds except while
// it waits idle. A producer that finds the role free takes it and writes
// what is queued itself (writeFromCaller): a message to an idle lane then
// costs no hand-off to the writer, whose wake-up is most of a sparse
// request's time on an otherwise idle machine.
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
	hl       *laneHealth   // the peer's for this lane, for Health
	// running says a writer goroutine exists; started and stopped under
	// peer.mu, with done closed when it exits.
	running atomic.Bool
	done    chan struct{}
	// live mirrors conn for other goroutines: Stats reads whether it is
	// set, and peer.stop closes it so that a writer blocked in a write to
	// a peer that stopped reading is released.
	live atomic.Pointer[liveConn]
	// writeMu is the writer's role: whoever holds it owns the fields
	// marked as the writer's below.
	writeMu sync.Mutex
	// quietSince is when the lane went quiet (monoNanos): when the writer
	// goroutine began to wait idle, or a producer last wrote since; zero
	// while the writer works. Producers read it before they try the role.
	quietSince atomic.Int64
	// dialCancel ends the dial in progress, for a kick.
	dialMu     sync.Mutex
	dialCancel context.CancelFunc
	dialStart  time.Time
	dialAddr   string // the address of the dial in progress
	// sightingCut says redialNow cut the last dial short, and
	// dialResumed that the dial in progress is the one that followed:
	// redialNow does not cut that one too. A peer seen again and again
	// whose dials hang (reachable only one way: its address dropped by a
	// firewall, say, while it connects to this node) had each dial cut
	// and restarted before it could fail, and its requests waited for
	// their deadlines instead of failing at the first failed dial.
	sightingCut, dialResumed bool
	// redirected says the dial in progress was cut short because the
	// peer moved (moved), or was seen again while it hung (redialNow):
	// its failure is none of the peer's.
	redirected atomic.Bool
	// refusedBusy says the last dial was refused for want of room
	// (wire.Busy): the peer answered it, so a connection of the peer's to
	// this node is no news that it is back (reconnected), and the lane
	// keeps its backoff. Taken for news, each such connection made the
	// lane dial again at once, and start its backoff afresh.
	refusedBusy atomic.Bool

	// strategyMu guards strategy: the writer calls it, Stats reads it and
	// SetCoalescing replaces it.
	strategyMu sync.Mutex
	strategy   coalescing.Strategy

	// ctrl holds the grants and refusals of large responses that the
	// back-channel reader asks the writer to send; ctrlTaken, on ctrlMu,
	// tells a reader waiting for them to be fewer (awaitControlRoom) that
	// the writer took them, or that its connection was closed.
	ctrlMu      sync.Mutex
	ctrl        []ctrlFrame
	ctrlPending atomic.Bool // ctrl is not empty: the writer's loop checks it without the lock
	ctrlTaken   *sync.Cond

	attrs     laneAttrs   // this lane's metric attributes (connAttrs)
	waitTimer *time.Timer // coalescing waits; stopped when unused
	// restart starts a writer that parked with its connection open
	// (parkIdle) when its next ping or idle close is due, or at once
	// for wakeWriter; stopped when unused.
	restart *time.Timer
	// Of coalesceWait, owned by the writer goroutine: how many of its runtime
	// timers in a row fired late, the precise waits since it last tried a
	// runtime timer, and the precise timer (made on first use, closed
	// before the writer may exit).
	timersLate    int
	timerProbe    int
	precise       *precisetimer.Timer
	preciseFailed bool

	// The writer's: owned by the holder of writeMu.
	conn       *liveConn
	idleClosed bool // the last connection was closed for being idle
	backoff    backoff.Backoff
	// connectedAt is when conn was established; backoffFirst says the
	// last connection did not prove itself (proved), so the next dial
	// waits its backoff first (connDied), counted from diedAt, when it
	// ended: a lane idle since has served it already.
	connectedAt  time.Time
	backoffFirst bool
	diedAt       time.Time
	random       *rand.Rand
	frames       frameWriter
	large        largeWriter
	lastWrite    time.Time // anything written, pings too: when the next ping is due
	lastSent     time.Time // messages or a large round written: Timeouts.Idle counts from it
	// leftBehind says the last write left in the queue messages the
	// strategy had seen before it: the next write goes without a wait.
	leftBehind bool
	// writtenAt is frames.written when conn was established: connDied
	// tells a connection that ended before anything was written on it
	// from one that was used.
	writtenAt int64
}

func newOutConn(t *Transport, p *peer, lane routing.Lane) *outConn {
	c := &outConn{
		t:         t,
		peer:      p,
		lane:      lane,
		wake:      make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		strategy:  newStrategy(*t.coalescing.Load(), lane),
		waitTimer: newStoppedTimer(),
		attrs:     t.tel.connAttrs(p, lane),
	}
	c.ctrlTaken = sync.NewCond(&c.ctrlMu)
	c.counters = &p.outbound[lane]
	c.hl = &p.health[lane]
	c.ctx, c.cancel = context.WithCancel(t.ctx)
	c.account = p.outAccount.Child(t.limitsOut.Load().forSends(lane, t.cfg.Memory.MaxMessageSize), true)
	c.backoff = backoff.Backoff{Min: t.cfg.Reconnect.MinBackoff, Max: t.cfg.Reconnect.MaxBackoff}
	c.random = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	c.restart = time.AfterFunc(time.Hour, func() { p.startWriter(c) })
	c.restart.Stop()
	return c
}

// enqueue takes capacity for one message and queues it for the writer.
// With wait it waits for capacity until ctx ends or the message expires;
// otherwise it fails at once with ErrOverloaded.
func (c *outConn) enqueue(ctx context.Context, it outItem, header, payload []byte, wait bool) error {
	size := int64(len(header) + len(payload) + outItemCost)
	if !c.account.TryTake(size) {
		if !wait {
			return ErrOverloaded
		}
		if _, ok := ctx.Deadline(); !ok && it.expiresAt != 0 {
			// A request's default timeout, which its context does not
			// carry (Request).
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, wallDeadline(it.expiresAt, time.Now()))
			defer cancel()
		}
		if !c.account.Wait(size, ctx.Done(), c.stop) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := c.peer.stopErrIfStopped(); err != nil {
				return err
			}
			if c.queue.refusing() == errRetired {
				return errRetired // send tries the lane's successor
			}
			return ErrOverloaded // can never fit under the current limits
		}
	}
	queued, err := c.queue.push(it, header, payload, c.lane != routing.Large)
	if err != nil {
		c.account.Release(size)
		return err
	}
	if c.lane != routing.Large && queued == 1 && c.quiet(it.enqueuedAt) && c.writeMu.TryLock() {
		wrote := c.writeFromCaller()
		if wrote && c.queue.has() {
			// Queued during its write by producers that found the role
			// taken (the second request of a burst, say): written now,
			// rather than by the writer goroutine they woke, which would
			// first have to wait for the role. Once only: a producer
			// does not go on writing others' messages.
			c.writeFromCaller()
		}
		c.writeMu.Unlock()
		if wrote {
			// Messages queued meanwhile by producers that found the
			// role taken woke the writer themselves.
			c.t.signalDrained()
			return nil
		}
	}
	if !c.signaled.Load() && c.signaled.CompareAndSwap(false, true) {
		c.signal()
	}
	if !c.running.Load() {
		c.peer.startWriter(c)
	}
	return nil
}

// withdraw withdraws large request id, whose caller gave up: not yet
// written, it is not, and its capacity is given back at once (see
// largeWriter.withdraw).
func (c *outConn) withdraw(id uint64, reason Reason) {
	if c.lane == routing.Large && c.large.withdraw(id, reason) {
		c.signal()
	}
}

// withdrawQueued withdraws request id of a small lane, whose caller gave
// up for reason, if it is still queued: it is never written, fails with
// reason (its one outcome; payload is the caller's, for OnDropped) and
// gives back its capacity at once. It reports false when the request is
// not queued: the writer took it (to write it, or fail it), or it failed
// already; its caller then tells the peer with a cancel, as before.
func (c *outConn) withdrawQueued(id uint64, reason Reason, payload []byte) bool {
	m, held, ok := c.queue.withdraw(id)
	if !ok {
		return false
	}
	m.payload = payload
	c.failed(&m, reason, nil)
	c.release(held)
	c.t.signalDrained() // a Shutdown may wait for this queue to empty
	return true
}

// drop counts a message refused before it was queued (outLane).
func (c *outConn) drop(r Reason) { c.counters.drop(r) }

// ctrlFrame is a grant or refusal the writer sends for the back-channel
// reader of connection serial.
type ctrlFrame struct {
	kind    wire.FrameKind
	stream  uint32
	payload []byte
	serial  uint64
}

// control asks the writer to send a grant or refusal of a large response
// on connection serial (and on no later one).
func (c *outConn) control(kind wire.FrameKind, stream uint32, payload []byte, serial uint64) {
	c.ctrlMu.Lock()
	c.ctrl = append(c.ctrl, ctrlFrame{kind, stream, payload, serial})
	c.ctrlPending.Store(true)
	c.ctrlMu.Unlock()
	c.wakeWriter()
}

// maxPendingControl bounds the grants and refusals a back-channel reader
// queues for the writer: past it, the reader waits for the writer to take
// them before it reads the next frame (awaitControlRoom). An acceptor
// may begin any number of large responses that are refused (for requests
// never made, or whose callers gave up), each refusal queued, with its
// failure, for the writer; one that reads nothing of what the writer
// writes had them all kept, some 80 bytes for each 29 it wrote, until
// Timeouts.Write cut the writer's write off.
const maxPendingControl = 1024

// awaitControlRoom waits, while maxPendingControl grants and refusals or
// more wait for the writer, until the writer takes them or closes conn,
// the connection the reader reads: the acceptor's frames are not read
// meanwhile, as an acceptor's reader does not read on while its own
// grants and refusals wait for the socket (inConn.sendBack). The writer
// takes them at every turn of its loop, so it waits only while the
// writer's write waits for the acceptor to read, for Timeouts.Write at
// most. With Timeouts.Write off nothing cuts that write off, and the
// reader, not reading, could not find the acceptor silent (its read
// deadline, Timeouts.Keepalive): an acceptor that hung behind the write
// kept the connection up for good. The wait then lasts Keepalive at
// most, and reports false past it: the acceptor was not heard, nor took
// what it was owed, for that long, and the connection is dead.
func (c *outConn) awaitControlRoom(conn *liveConn) bool {
	if !c.ctrlPending.Load() { // none: the common case, without the lock
		return true
	}
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if len(c.ctrl) < maxPendingControl || conn.dead.Load() {
		return true
	}
	expired := false
	if k := c.t.cfg.Timeouts.Keepalive; k > 0 && c.t.cfg.Timeouts.Write <= 0 {
		timer := time.AfterFunc(k, func() {
			c.ctrlMu.Lock()
			expired = true
			c.ctrlTaken.Broadcast()
			c.ctrlMu.Unlock()
		})
		defer timer.Stop()
	}
	for len(c.ctrl) >= maxPendingControl && !conn.dead.Load() {
		if expired {
			return false
		}
		c.ctrlTaken.Wait()
	}
	return true
}

// controlEnded wakes a back-channel reader waiting in awaitControlRoom
// for a connection that has just been killed, whose frames the writer
// will never take: closeConn, whose writer may stop or exit next.
func (c *outConn) controlEnded() {
	c.ctrlMu.Lock()
	c.ctrlTaken.Broadcast()
	c.ctrlMu.Unlock()
}

// writeControl writes the pending grants and refusals meant for the
// current connection, and forgets those for an earlier one.
func (c *outConn) writeControl() error {
	if !c.ctrlPending.Load() {
		return nil
	}
	c.ctrlMu.Lock()
	frames := c.ctrl
	c.ctrl = nil
	c.ctrlPending.Store(false)
	c.ctrlTaken.Broadcast()
	c.ctrlMu.Unlock()
	if c.conn == nil || len(frames) == 0 {
		return nil
	}
	c.frames.reserve(2 * len(frames))
	for _, f := range frames {
		if f.serial == c.conn.serial {
			if len(f.payload) > 0 {
				c.frames.add(f.kind, f.stream, f.payload)
			} else {
				c.frames.add(f.kind, f.stream)
			}
		}
	}
	c.setWriteDeadline()
	return c.frames.flush(c.conn.Conn)
}

// signal puts a token in wake unless one is there.
func (c *outConn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// wakeWriter signals the writer, and starts it if it parked (parkIdle):
// the back channel's calls, for a grant or refusal to write or a
// connection to close. Not startWriter itself, which takes peer.mu: the
// restart timer's goroutine does, so that no caller, whatever it holds,
// waits for it. A writer that is parking when this looks (running still
// set) sees what the caller set before it (writerMayExit).
func (c *outConn) wakeWriter() {
	c.signal()
	if !c.running.Load() {
		c.restart.Reset(0)
	}
}

// hasWork reports whether the writer has something to write.
func (c *outConn) hasWork() bool {
	if n, _ := c.queue.pending(); n > 0 {
		return true
	}
	return c.lane == routing.Large && c.large.busy(monoNanos())
}

// run is the writer goroutine.
func (c *outConn) run() {
	defer c.t.wg.Done()
	c.writeMu.Lock()
	c.quietSince.Store(0) // set by a writer that parked (parkIdle)
	for {
		select {
		case <-c.stop:
			c.closeConn("stopped")
			// Before the writer says it is gone: a writer started after
			// that owns the timer field.
			c.closePreciseTimer()
			c.writeMu.Unlock()
			c.peer.writerExited(c)
			return
		default:
		}
		if c.conn != nil && c.conn.dead.Load() {
			c.connDied()
		}
		// A grant or refusal asked for after this signals wake, so the
		// idle wait below cannot sleep on it.
		if err := c.writeControl(); err != nil {
			c.conn.kill("write error")
			continue
		}
		if !c.hasWork() {
			c.leftBehind = false // what it left was written, or failed
			if c.conn == nil && c.large.idle() {
				c.hl.idle(time.Now())
				c.closePreciseTimer() // made again if this writer goes on
				c.writeMu.Unlock()
				if c.peer.writerMayExit(c, nil) {
					// Its queue emptied without a write perhaps (a failed
					// dial failed its requests, or they expired): a
					// Shutdown waiting for it must look again, or it
					// waits out its context.
					c.t.signalDrained()
					return
				}
				c.writeMu.Lock()
			}
			c.t.signalDrained()
			if c.parkIdle() {
				return
			}
			if c.conn == nil || c.conn.dead.Load() {
				continue // closed for being idle, or dead: seen to above
			}
			c.idle()
			continue
		}
		if c.conn == nil {
			if c.backoffFirst {
				c.backoffFirst = false
				c.sleepBackoff(time.Since(c.diedAt))
				continue // stopped meanwhile, perhaps
			}
			if !c.connect() {
				c.sleepBackoff(0)
				continue
			}
			if c.conn.dead.Load() {
				// Killed as it was made (the peer moved, or stopped, while
				// this dialled): nothing was written into it, and nothing
				// must be, or the queue fails as reset unwritten.
				continue
			}
		}
		before := c.frames.written
		if err := c.flush(); err != nil {
			c.t.log.Debug("internode: write failed", "peer", c.peer.id, "lane", c.lane, "err", err)
			c.conn.kill("write error")
		} else if c.frames.written != before {
			// Only a flush that wrote: one that returned early (the
			// connection lost while it waited) or a large round that only
			// withdrew wrote nothing, and lastWrite is then the previous
			// write's, or the connection's making.
			c.hl.wrote(c.lastWrite)
		}
	}
}

// idle waits for work while the lane has none: it pings the peer when
// nothing was written for a keepalive interval, closes the connection
// once no message was written for Timeouts.Idle and no request written
// on it awaits its response, and wakes when a large message waiting for a
// grant expires, to withdraw it.
func (c *outConn) idle() {
	wait := time.Hour
	if c.conn != nil {
		wait = c.untilDue()
		if linger := writerLinger - time.Since(c.lastSent); linger > 0 && c.large.idle() {
			wait = min(wait, linger) // then parkIdle
		}
	}
	if c.lane == routing.Large && !c.large.idle() {
		// At the earliest deadline in flight: polled every keepalive
		// interval instead, a message ended up to a second past it,
		// holding its capacity and its begun slot meanwhile.
		wait = c.large.untilExpiry(monoNanos(), min(wait, wire.KeepaliveInterval))
	}
	timer := c.waitTimer
	timer.Reset(wait)
	defer stopTimer(timer)
	// Producers may write meanwhile (writeFromCaller).
	c.quietSince.Store(max(monoNanos(), 1))
	c.writeMu.Unlock()
	fired := false
	select {
	case <-c.stop:
	case <-c.wake:
		c.signaled.Store(false)
	case <-timer.C:
		fired = true
	}
	c.writeMu.Lock()
	c.quietSince.Store(0)
	if !fired {
		return
	}
	if c.lane == routing.Large && !c.large.idle() {
		c.large.pruneExpired(&c.queue, monoNanos(), c) // begun ones: by the next step
	}
	c.doDue()
}

// doDue does what is due on the lane's connection, if it has one, while
// it has nothing to write: it closes the connection once no message was
// written for Timeouts.Idle and no request written on it awaits its
// response, or else pings the peer when nothing was written for a
// keepalive interval.
func (c *outConn) doDue() {
	cfg := &c.t.cfg
	if c.conn == nil {
		return
	}
	switch {
	case cfg.Timeouts.Idle > 0 && time.Since(c.lastSent) >= cfg.Timeouts.Idle && c.large.idle() && !c.t.calls.pendingOn(c.conn.serial):
		c.closeConn("idle")
		c.idleClosed = true
	case time.Since(c.lastWrite) >= wire.KeepaliveInterval:
		// Whatever Timeouts.Keepalive says here: the peer's may be on.
		c.setWriteDeadline()
		if err := c.frames.writePing(c.conn.Conn); err != nil {
			c.conn.kill("ping failed")
			return
		}
		c.lastWrite = time.Now()
		c.hl.wrote(c.lastWrite)
	}
}

// untilDue is how long the writer may wait, with conn open and nothing
// to write, before a ping or the idle close is due.
func (c *outConn) untilDue() time.Duration {
	wait := max(wire.KeepaliveInterval-time.Since(c.lastWrite), 0)
	// Past Idle, a connection kept open for its pending requests is
	// looked at again when the next ping is due, not at once.
	if left := c.t.cfg.Timeouts.Idle - time.Since(c.lastSent); c.t.cfg.Timeouts.Idle > 0 && c.large.idle() && left > 0 {
		wait = min(wait, left)
	}
	return wait
}

// writerLinger is how long a writer with an open connection and nothing
// to write waits idle before it parks (parkIdle): a lane busy in bursts
// keeps its goroutine between them; one quiet for longer frees the
// goroutine's stack, the most an idle lane costs.
const writerLinger = 10 * time.Millisecond

// parkIdle lets the writer goroutine exit while its connection stays
// open, once the lane has had nothing to write for writerLinger and
// nothing but a ping or the idle close is coming: an idle lane then
// costs no goroutine. The restart timer starts a writer when the ping
// or the close is due; a message, or the back channel (wakeWriter),
// starts one before that. Producers may write from their goroutine
// meanwhile, as while the writer waits idle (writeFromCaller). It
// reports whether the writer exited; if not, it holds writeMu again.
func (c *outConn) parkIdle() bool {
	if c.conn == nil || c.conn.dead.Load() || !c.large.idle() || c.ctrlPending.Load() || time.Since(c.lastSent) < writerLinger {
		return false
	}
	// What the restart timer started this writer for: the idle close,
	// which then lets the writer exit for good, or a ping.
	c.doDue()
	conn := c.conn
	if conn == nil || conn.dead.Load() {
		return false
	}
	wait := c.untilDue()
	if wait < writerLinger {
		return false // idle waits for what is due, and does it
	}
	c.quietSince.Store(max(monoNanos(), 1))
	c.closePreciseTimer() // made again if this writer goes on
	c.restart.Reset(wait)
	c.writeMu.Unlock()
	if c.peer.writerMayExit(c, conn) {
		return true
	}
	c.writeMu.Lock()
	c.quietSince.Store(0)
	return false
}

// setWriteDeadline bounds the next write: a peer that stops reading for
// Timeouts.Write is disconnected, and what was being written fails.
func (c *outConn) setWriteDeadline() {
	if d := c.t.cfg.Timeouts.Write; d > 0 {
		_ = c.conn.SetWriteDeadline(time.Now().Add(d))
	}
}

// quiet reports whether, at now, the writer has waited idle, and no
// producer has written, for callerWriteIdle.
func (c *outConn) quiet(now int64) bool {
	q := c.quietSince.Load()
	return q != 0 && now-q >= int64(c.t.quietFor)
}

// writeFromCaller writes a small lane's queue from a producer's goroutine,
// which holds the writer's role while the writer goroutine waits idle,
// when its message is the only one queued on a lane quiet for
// callerWriteIdle (enqueue checks; and once more, after such a write, for
// what was queued during it). It writes only to an established
// connection, when the coalescing strategy would not wait, and when the
// write cannot block: the queue and the socket's unacknowledged bytes are
// both within callerWriteLimit, so a peer that stopped reading never holds
// a producer. Otherwise, or when the write failed, it reports false, and
// the producer wakes the writer, which waits, writes, or deals with the
// broken connection.
func (c *outConn) writeFromCaller() bool {
	if c.conn == nil || c.conn.dead.Load() || c.ctrlPending.Load() || c.t.closing.Load() {
		return false
	}
	limit := c.t.callerWriteLimit(c.lane)
	if _, bytes := c.queue.pending(); bytes > limit || !c.sendQueueLow(limit) {
		return false
	}
	if c.askWait() > 0 {
		return false
	}
	// What it writes is what it takes, not what it looked at above:
	// producers that found the role taken may have queued more since.
	b, observed := c.queue.takeWithin(limit)
	if b == nil {
		return false // more than it may write: the writer's
	}
	c.setWriteDeadline()
	before := c.frames.written
	err := c.writeTaken(b, observed, 0, 0, true)
	now := time.Now()
	c.quietSince.Store(max(int64(now.Sub(processStart)), 1)) // monotonic, as monoNanos
	if err != nil {
		c.t.log.Debug("internode: write failed", "peer", c.peer.id, "lane", c.lane, "err", err)
		c.conn.kill("write error")
		return false
	}
	if c.frames.written != before {
		// Only a write that wrote, as in flush: a message that expired
		// on its way here is failed, not written, and must not put off
		// the ping the peer's keepalive waits for, nor the idle close.
		c.lastWrite, c.lastSent = now, now
		c.hl.wrote(now)
	}
	return true
}

// callerWriteIdle is how long a lane must have been quiet — its writer
// waiting idle, and no producer writing — before a producer writes its
// own message. Handing a message to the writer goroutine costs waking it,
// and the thread it runs on: little while the lane is busy, when the
// writer has just run (and the hand-off lets the producer go on while the
// writer writes), much once the lane has been quiet and that thread
// sleeps. Measured on loopback (2 cores, BenchmarkRequestAlone and
// BenchmarkRequestSparse): a producer that always wrote its own message
// took half the time for a request made after 500 µs of quiet, but 15%
// more for back-to-back requests (a round trip every 80 µs); with this
// bound, 0.57× and 0.94× the times of the writer alone.
const callerWriteIdle = 200 * time.Microsecond

// callerWriteMax bounds what a producer writes itself, and the socket's
// send queue it writes behind: together they fit with room to spare in a
// TCP socket's send buffer (Linux starts one at tcp_wmem's default,
// 16 KiB), so the write does not wait for the peer. (Under memory
// pressure the kernel may shrink the buffer to tcp_wmem's minimum, 4 KiB;
// a write may then wait, bounded by Timeouts.Write like any other.)
const callerWriteMax = 4 << 10

// callerWriteLimit is callerWriteMax for lane's sockets, less when its
// send buffer was set smaller than the kernel's default (Linux doubles
// what SO_SNDBUF is given, so a quarter of it, twice, still fits).
func (t *Transport) callerWriteLimit(lane routing.Lane) int {
	if sb := t.cfg.Lanes.Sockets[lane].SendBuffer; sb > 0 {
		return min(callerWriteMax, sb/4)
	}
	return callerWriteMax
}

// sendQueueLow reports whether the connection's socket has at most limit
// bytes unacknowledged (see queueBound).
func (c *outConn) sendQueueLow(limit int) bool {
	return c.conn.sendBound.low(limit, c.frames.written, c.conn.probe)
}

// queueBound keeps a bound on a socket's send queue, so that a caller
// about to write need not ask the socket (an ioctl) every time: the depth
// SIOCOUTQ last reported plus the bytes written since, as acknowledgements
// only shrink the queue. It is kept only where the bytes written are the
// bytes queued (plainTCP). A request every few hundred microseconds then
// costs an ioctl every 20 or so instead of one each.
type queueBound struct {
	seen   int   // the depth last read; -1: none yet
	seenAt int64 // the bytes written by then
	plain  bool  // the socket queues the bytes written (plainTCP)
}

// newQueueBound returns the bound of conn's send queue.
func newQueueBound(conn net.Conn) queueBound { return queueBound{seen: -1, plain: plainTCP(conn)} }

// low reports whether the queue holds at most limit bytes, written bytes
// having been written in all: from the bound while it is within limit,
// from probe otherwise (false when there is none to ask).
func (b *queueBound) low(limit int, written int64, probe *sockstat.Probe) bool {
	if b.seen >= 0 && int64(b.seen)+written-b.seenAt <= int64(limit) {
		return true
	}
	if probe == nil {
		return false
	}
	n, err := probe.SendQueue()
	if err != nil {
		return false
	}
	b.saw(n, written)
	return n <= limit
}

// saw records that the queue held n bytes once written bytes had been
// written.
func (b *queueBound) saw(n int, written int64) {
	if b.plain {
		b.seen, b.seenAt = n, written
	}
}

// plainTCP reports whether the bytes written to conn are the bytes its
// socket queues: a TCP connection, not TLS (which adds record headers).
func plainTCP(conn net.Conn) bool {
	if pc, ok := conn.(*prefixConn); ok {
		conn = pc.Conn
	}
	switch conn.(type) {
	case *net.TCPConn, *wakeConn:
		return true
	}
	return false
}

// flush writes what is queued: on small lanes after the coalescing wait,
// as batch frames; on the large lane, a round of the large writer.
func (c *outConn) flush() error {
	// A round that wrote nothing (a large lane's step that only withdrew
	// messages, say) does not count as a write: it must not put off the
	// ping the peer's keepalive waits for, nor the idle close.
	before := c.frames.written
	defer func() {
		if c.frames.written != before {
			c.lastWrite = time.Now()
			c.lastSent = c.lastWrite
		}
	}()
	if c.lane == routing.Large {
		c.setWriteDeadline()
		defer c.t.waker.yieldAfterPart()
		return c.large.step(c.conn.Conn, &c.frames, &c.queue, c.t.maxFrame, monoNanos(), c)
	}
	var requested time.Duration
	if !c.leftBehind {
		requested = c.askWait()
	}
	var waited time.Duration
	if requested > 0 {
		waited = c.coalesceWait(requested)
		if c.conn.dead.Load() {
			// Lost while this waited (its reader woke the wait): nothing
			// of the queue went into it, and nothing does. The loop closes
			// it, and the messages wait for the next connection as they
			// would had the loss been seen before the wait.
			return nil
		}
	}
	// Timeouts.Write bounds the write, not the wait before it.
	c.setWriteDeadline()
	return c.writeQueued(requested, waited)
}

// writeQueued writes the head segment of a small lane's queue as batch
// frames, after a coalescing wait of waited for requested.
func (c *outConn) writeQueued(requested, waited time.Duration) error {
	// A write carries one segment. Messages the strategy saw before it
	// and left in the queue were pending when it answered: they have had
	// their wait, and go in the next write at once. Asked again, the
	// strategy began a new wait for them, and a message queued during
	// a wait but in the next segment waited up to two windows.
	b, observed, shownLeft := c.queue.takeShown()
	c.leftBehind = shownLeft
	if b == nil {
		return nil
	}
	return c.writeTaken(b, observed, requested, waited, false)
}

// writeTaken writes segment b, taken from the queue with observed of its
// messages already shown to the strategy; byCaller says a producer writes
// it (writeFromCaller).
func (c *outConn) writeTaken(b *batch, observed int, requested, waited time.Duration, byCaller bool) error {
	defer func() { c.release(c.queue.release(b)) }()
	c.strategyMu.Lock()
	for i := observed; i < len(b.items); i++ {
		c.strategy.Observe(b.items[i].enqueued(), b.items[i].size())
	}
	c.strategyMu.Unlock()
	sent, sentBytes, err := c.frames.writeBatch(c.conn.Conn, b, c.t.maxFrame, monoNanos(), c)
	if err == nil && sent > 0 {
		c.t.tel.recordFlush(c.attrs.of(c.peer), sent, waited)
		if byCaller {
			c.counters.callerWrites.Add(1)
		}
	}
	c.strategyMu.Lock()
	c.strategy.Flushed(time.Now(), sent, sentBytes, requested, waited)
	c.strategyMu.Unlock()
	return err
}

// failRequests fails the queued requests, which were never written, with
// reason and err; one-way messages and responses stay. It runs when a
// dial failed.
func (c *outConn) failRequests(reason Reason, err error) {
	if c.lane == routing.Large {
		c.large.admit(&c.queue)
		c.large.failWaitingRequests(&c.queue, reason, err, c)
	}
	dropped, removed := c.queue.prune(func(it *outItem) bool { return it.isRequest })
	for i := range dropped {
		c.failed(&dropped[i], reason, err)
	}
	c.release(removed)
}

// measureSendQueue records the socket's send-queue depth after a write,
// when the connection's sampler says the write is worth an ioctl (see
// sockstat.Sampler: a slow write, a queue that showed a backlog, and one
// write in 16 or per 16 KiB otherwise).
func (c *outConn) measureSendQueue() {
	if c.conn == nil || c.conn.probe == nil || !c.t.measuring() {
		return
	}
	s := &c.conn.sendSampler
	if !s.Due(c.frames.lastBytes, c.frames.lastSlow) {
		return
	}
	if n, err := c.conn.probe.SendQueue(); err == nil {
		c.conn.sendBound.saw(n, c.frames.written)
		s.Record(n, c.frames.lastBytes)
		c.peer.sendPeak[c.lane].Observe(int64(n))
		c.peer.sendMax[c.lane].Observe(int64(n))
		c.peer.measured(c.lane)
	}
}

// applyWithdrawals withdraws the large requests whose callers gave up
// (withdraw): each fails, counted cancelled or expired, and gives back
// its capacity at once. It runs while no connection can be had (the
// reconnect backoff, a dial), where no step does; a cancelled request
// otherwise held its capacity until the next dial failed, and was
// counted a connection reset. Nothing is begun without a connection, so
// no FrameLargeCancel is owed.
func (c *outConn) applyWithdrawals() {
	if c.lane != routing.Large {
		return
	}
	c.large.admit(&c.queue)
	c.large.applyWithdrawals(&c.queue, c)
	c.t.signalDrained()
}

// pruneExpired fails queued messages whose deadline has passed, keeping the
// rest in order. It runs while no connection can be had.
func (c *outConn) pruneExpired() {
	now := monoNanos()
	if c.lane == routing.Large {
		c.large.admit(&c.queue)
		c.large.pruneExpired(&c.queue, now, c)
	}
	dropped, removed := c.queue.prune(func(it *outItem) bool { return it.expired(now) })
	for i := range dropped {
		c.failed(&dropped[i], ReasonExpired, nil)
	}
	c.release(removed)
}
