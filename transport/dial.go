package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Connection kinds beyond the message lanes, sent in the handshake's lane
// byte. They are part of the wire format.
const (
	laneStreams   = routing.NumLanes     // 3: a stream session (smux)
	laneFile      = routing.NumLanes + 1 // 4: one file transfer
	laneOwnStream = routing.NumLanes + 2 // 5: one stream on a connection of its own
	numKinds      = routing.NumLanes + 3
)

// dial connects to peer id and handshakes for a connection of the given
// kind (a routing.Lane, laneStreams, laneFile or laneOwnStream).
func (t *Transport) dial(ctx context.Context, id cluster.NodeID, kind uint8) (net.Conn, error) {
	nc, _, err := t.dialAgreeing(ctx, id, kind)
	return nc, err
}

// dialAgreeing is dial, and returns the capabilities the handshake
// agreed.
func (t *Transport) dialAgreeing(ctx context.Context, id cluster.NodeID, kind uint8) (net.Conn, wire.Capabilities, error) {
	member, ok := t.cfg.Membership.Lookup(id)
	if !ok {
		return nil, 0, ErrUnknownPeer
	}
	// Timeouts.Dial bounds the TCP connect; the handshakes that follow
	// are bounded by one Timeouts.Handshake together (Config: it bounds
	// a handshake, TLS and Hello/Reply, as the acceptor bounds them).
	dialCtx, cancel := context.WithTimeout(ctx, t.cfg.Timeouts.Dial)
	nc, err := t.cfg.Dialer.DialContext(dialCtx, "tcp", member.Addr)
	cancel()
	if err != nil {
		return nil, 0, err
	}
	if nc == nil {
		return nil, 0, errors.New("transport: Config.Dialer returned neither a connection nor an error")
	}
	if id != t.cfg.NodeID && t.reachedSelf(nc) {
		// This node listens at the address the membership gives for id:
		// id's old one, this node's since it restarted there. A stale
		// address, as handshake finds another member at it, not a
		// refusal for good (which this node's own acceptor would answer:
		// its own ID).
		nc.Close()
		return nil, 0, fmt.Errorf("the node at %s is this node, %q, not %q: the membership's address for %q is stale",
			member.Addr, t.cfg.NodeID, id, id)
	}
	// Options that need a TCP socket are skipped on other conns (a
	// Config.Dialer's in-memory pipe, say): see Config.Listen.
	if tcp, ok := nc.(*net.TCPConn); ok {
		if err := tcp.SetNoDelay(true); err != nil {
			nc.Close()
			return nil, 0, err
		}
		if kind < routing.NumLanes {
			// Data unacknowledged for as long as a write may take: the
			// peer is gone, even while no write blocks (a light lane
			// across a partition).
			sc := t.cfg.Lanes.Sockets[kind].withUserTimeout(t.cfg.Timeouts.Write)
			if err := sc.apply(tcp); err != nil {
				nc.Close()
				return nil, 0, fmt.Errorf("socket options: %w", err)
			}
			if err := sc.applyOutbound(tcp); err != nil {
				nc.Close()
				return nil, 0, fmt.Errorf("socket options: %w", err)
			}
		}
		if kind == laneOwnStream {
			if err := t.setOwnStreamUserTimeout(tcp); err != nil {
				nc.Close()
				return nil, 0, fmt.Errorf("socket options: %w", err)
			}
		}
	}
	if kind < routing.NumLanes && watched(routing.Lane(kind)) {
		nc = t.wrapForWaking(nc) // under TLS
	}
	// Cancelling ctx interrupts the handshakes too, not only the dial;
	// closing the socket ends the TLS layer above it.
	sock := nc
	stop := context.AfterFunc(ctx, func() { sock.Close() })
	defer stop()
	// One deadline for the TLS handshake and the Hello after it: giving
	// each its own Timeouts.Handshake let a peer that dawdles over TLS
	// and then never replies hold the dial for twice the timeout.
	deadline := time.Now().Add(t.cfg.Timeouts.Handshake)
	if t.tls != nil {
		// Verifies the chain, the identity and VerifyPeer (clientFor).
		tc := tls.Client(nc, t.tls.clientFor(id))
		hsCtx, cancel := context.WithDeadline(ctx, deadline)
		err := tc.HandshakeContext(hsCtx)
		timedOut := hsCtx.Err()
		cancel()
		if err != nil {
			nc.Close()
			if ctx.Err() != nil { // cancelled: not a refusal
				return nil, 0, fmt.Errorf("TLS: %w: %w", ctx.Err(), err)
			}
			if timedOut != nil { // Timeouts.Handshake passed: not a refusal either
				return nil, 0, fmt.Errorf("TLS: %w: %w", timedOut, err)
			}
			if hungUp(err) {
				// The peer closed the connection before TLS said a word:
				// it had no room for one more handshake
				// (MaxPendingHandshakes) or was closing, as a plain-text
				// peer that hangs up before its reply. Not a refusal: one
				// is an alert, or this end's own verification failing;
				// taken for one, it failed every queued message for good.
				return nil, 0, fmt.Errorf("TLS: the peer closed the connection during the handshake: %w", err)
			}
			if socketFailed(err) {
				// The connection failed under TLS (the peer's host went
				// off the network: ETIMEDOUT, EHOSTUNREACH), as the plain
				// handshake's read would: no word of the peer's, so no
				// refusal, which would fail every queued message for good.
				return nil, 0, fmt.Errorf("TLS: %w", err)
			}
			if other := (*otherNodeError)(nil); errors.As(err, &other) {
				// Another member of the cluster listens at id's address:
				// a stale address, as handshake finds it without TLS.
				// Not a refusal: the membership will catch up.
				return nil, 0, fmt.Errorf("TLS: the node at %s is %q, not %q: the membership's address for %q is stale: %w",
					member.Addr, other.node, id, id, err)
			}
			if isRemoteAlert(err) {
				return nil, 0, fmt.Errorf("%w: TLS: the peer refused the handshake (does it run TLS, with this node's CA?): %w", ErrRefused, err)
			}
			return nil, 0, fmt.Errorf("%w: TLS: %w", ErrRefused, err)
		}
		nc = tc
	}
	caps, err := t.handshake(nc, kind, id, deadline)
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			// Its AfterFunc closed the socket under the handshake, whose
			// error ("use of closed network connection") says less.
			return nil, 0, fmt.Errorf("handshake: %w: %w", ctx.Err(), err)
		}
		if t.tls != nil && isRemoteAlert(err) {
			// TLS 1.3 tells a client that its certificate was refused
			// only when it reads: waiting will not help.
			return nil, 0, fmt.Errorf("%w: TLS: the peer refused this node's certificate: %w", ErrRefused, err)
		}
		return nil, 0, err
	}
	if !stop() {
		// ctx ended after the handshakes, and its AfterFunc closes the
		// socket: no connection to hand out.
		nc.Close()
		return nil, 0, ctx.Err()
	}
	t.watchForWaking(nc)
	return nc, caps, nil
}

// reachedSelf reports whether nc, a connection just dialled, reached
// this node's own listener: its remote address is the listener's, or,
// for a listener on every address, has the listener's port and the
// connection's own local IP, as a connection to one of the host's own
// addresses has. A listener or connection whose addresses are not TCP
// ones (Config.Listen's, Config.Dialer's) is not checked.
func (t *Transport) reachedSelf(nc net.Conn) bool {
	own, ok := t.ln.Addr().(*net.TCPAddr)
	remote, okR := nc.RemoteAddr().(*net.TCPAddr)
	local, okL := nc.LocalAddr().(*net.TCPAddr)
	if !ok || !okR || !okL || remote.Port != own.Port {
		return false
	}
	if own.IP.IsUnspecified() {
		return remote.IP.Equal(local.IP)
	}
	return remote.IP.Equal(own.IP)
}

// hungUp reports whether err says only that the peer closed the
// connection.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// socketFailed reports whether err is a failed read or write of the
// connection itself, not an error of TLS (whose alerts, the peer's or
// this end's, are "remote error" and "local error").
func socketFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "read" || op.Op == "write")
}

// handshake sends the Hello to peer id and reads the Reply by deadline
// (what is left of Timeouts.Handshake), and returns the capabilities both
// sides have.
func (t *Transport) handshake(nc net.Conn, kind uint8, id cluster.NodeID, deadline time.Time) (wire.Capabilities, error) {
	if err := nc.SetDeadline(deadline); err != nil {
		return 0, err
	}
	hello := wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion, Lane: kind,
		Capabilities: t.offers(kind), Cluster: t.cfg.ClusterName, Node: string(t.cfg.NodeID)}
	out, err := wire.AppendHello(make([]byte, 0, 64), &hello)
	if err != nil {
		return 0, err
	}
	if _, err := nc.Write(out); err != nil {
		return 0, err
	}
	buf := make([]byte, wire.MaxHandshakeSize)
	raw, err := wire.ReadHandshake(nc, buf)
	if errors.Is(err, wire.ErrBadMagic) || errors.Is(err, wire.ErrChecksum) || errors.Is(err, wire.ErrHandshakeTooLarge) ||
		errors.Is(err, wire.ErrMalformed) {
		// The peer speaks something else (a TLS alert, say): retrying
		// will not help.
		return 0, fmt.Errorf("%w: the peer does not speak internode: %w", ErrRefused, err)
	}
	if err != nil {
		return 0, fmt.Errorf("reading handshake reply: %w", err)
	}
	reply, err := wire.DecodeReply(raw)
	if err != nil {
		return 0, fmt.Errorf("%w: decoding handshake reply: %w", ErrRefused, err)
	}
	if reply.Reason != wire.Accepted {
		return 0, &HandshakeError{Reason: reply.Reason, Message: reply.Message}
	}
	if reply.Version < wire.MinVersion || reply.Version > wire.MaxVersion {
		return 0, fmt.Errorf("%w: the peer chose version %d, not one of %d to %d", ErrRefused,
			reply.Version, wire.MinVersion, wire.MaxVersion)
	}
	// An acceptor answers with the offered bits it has: one that claims
	// more gets only what was offered.
	caps := reply.Capabilities & hello.Capabilities
	if caps&wire.CapAcceptorID != 0 && reply.Message != string(id) {
		// Another node listens at the address the membership gives for
		// id: id's old one, reused before the membership noticed. Not a
		// refusal: the membership will catch up, or id will leave.
		return 0, fmt.Errorf("the node at %s is %q, not %q: the membership's address for %q is stale",
			nc.RemoteAddr(), reply.Message, id, id)
	}
	return caps, nc.SetDeadline(time.Time{})
}

// liveConn is an established, handshaken connection. Its back-channel
// reader marks it dead as soon as the peer closes it or falls silent, so
// the writer redials instead of writing into a socket that would swallow
// the next batch.
type liveConn struct {
	net.Conn
	serial uint64            // unique among the transport's connections
	caps   wire.Capabilities // what the handshake agreed
	dead   atomic.Bool
	addr   string // the member's address it was dialled to
	// heard is when the back channel last carried a frame (monoNanos: a
	// step of the wall clock must not make a live connection look silent).
	heard atomic.Int64
	// answered says the back channel carried a frame: the peer is alive
	// past its handshake (its first beat follows its reply), not merely
	// accepting.
	answered atomic.Bool
	// backHeader is the back-channel reader's buffer.
	backHeader [wire.FrameHeaderSize]byte
	why        atomic.Pointer[string]
	moved      atomic.Bool     // killed because the peer moved (movedAway)
	probe      *sockstat.Probe // nil when the connection has no kernel socket
	// sendSampler picks the writes after which probe is read; the
	// writer's.
	sendSampler sockstat.Sampler
	// sendBound bounds the socket's send queue, against the writer's
	// frames.written; the writer's.
	sendBound queueBound
	// responses is the back-channel reader, for a caller that gives up
	// on a large response arriving on it (refuseGivenUp).
	responses atomic.Pointer[responseReader]
}

// movedAway kills the connection because its peer is at another address
// now: this node's doing, not the peer's (connDied).
func (lc *liveConn) movedAway(why string) {
	lc.moved.Store(true)
	lc.kill(why)
}

// kill marks the connection dead, with why, and closes it.
func (lc *liveConn) kill(why string) {
	if lc.dead.CompareAndSwap(false, true) {
		lc.why.Store(&why)
	}
	lc.Close()
}

// dropIfSilent kills the lane's connection when its peer has not been
// heard on it for half of Timeouts.Keepalive (two keepalive intervals at
// least): the peer just opened a new connection to this node, which it
// does when it judged its own dead or restarted, so this one has likely
// died the same way, and requests written on it would wait for responses
// that cannot come back. The new connection is the evidence that halves
// the silence tolerated; with the checks off (negative Keepalive), no
// silence is judged and the connection is left as it is.
func (c *outConn) dropIfSilent() {
	k := c.t.cfg.Timeouts.Keepalive
	if k < 0 {
		return
	}
	if lc := c.live.Load(); lc != nil && time.Duration(monoNanos()-lc.heard.Load()) > max(2*wire.KeepaliveInterval, k/2) {
		lc.kill("peer silent and back on a new connection")
		c.wakeWriter()
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
	if c.dialCancel != nil && !c.dialResumed && time.Since(c.dialStart) > staleDial {
		// Restarted, not failed: the peer was just seen, and nothing
		// queued fails for the dial this cuts short (connect). Once: the
		// dial that follows runs its course (sightingCut).
		c.redirected.Store(true)
		c.sightingCut = true
		c.dialCancel()
	}
	c.dialMu.Unlock()
}

// moved ends the lane's connection and dial in progress if they are to
// another address than addr, the peer's new one: the writer redials.
func (c *outConn) moved(addr string) {
	c.dialMu.Lock()
	if c.dialCancel != nil && c.dialAddr != addr {
		c.redirected.Store(true)
		c.dialCancel()
	}
	c.dialMu.Unlock()
	if lc := c.live.Load(); lc != nil && lc.addr != addr {
		lc.movedAway("the peer moved to " + addr)
		c.wakeWriter()
	}
}

// staleDial is how long a dial may have been going when the peer is seen
// again before it is restarted: by then its SYN was likely lost, and the
// kernel would wait a second or more before sending another.
const staleDial = 250 * time.Millisecond

// connect dials and handshakes. On failure it fails what cannot wait and
// reports false.
func (c *outConn) connect() bool {
	conn, err := c.dial()
	c.idleClosed = false
	c.refusedBusy.Store(isBusy(err))
	if err == nil {
		c.redirected.Store(false)
		c.conn = conn
		c.live.Store(conn)
		c.writtenAt = c.frames.written
		// The membership's answer now, not the peer's entry, whose address
		// follows its events: they may lag behind Lookup, which the dial
		// used, and a connection to the member's current address would be
		// killed for it, again at every redial, until the event came.
		if m, ok := c.t.cfg.Membership.Lookup(c.peer.id); ok && m.Addr != conn.addr {
			conn.movedAway("the peer moved to " + m.Addr) // while this dialled: moved missed it
		}
		c.frames.comp = c.t.newCompressor(c.lane, conn.caps, conn.RemoteAddr(), c.counters)
		select {
		case <-c.stop: // stopped while dialling: peer.stop missed this one
			conn.kill("stopped")
		default:
		}
		c.counters.connects.Add(1)
		c.connectedAt = time.Now()
		c.lastWrite = time.Now()
		c.lastSent = c.lastWrite
		c.hl.handshaken(c.lastWrite) // connected once the peer is heard (readBack)
		c.large.open()
		c.t.wg.Add(1)
		go c.readBack(conn)
		return true
	}
	if c.ctx.Err() != nil {
		// Stopped while dialling (Close, a Leave, a stranger forgotten):
		// the stop cut the dial short, which says nothing of the peer, and
		// peer.stop fails what is queued with its own reason. The lane's
		// context, not its stop: Close cancels the transport's context,
		// which ends the dial, before it stops the peers, which closes
		// stop; a writer that looked in between would count a failure
		// and fail the queue as reset.
		c.redirected.Store(false)
		return false
	}
	if c.redirected.Swap(false) {
		// The peer moved while this dialled its old address, or was seen
		// again while this dial hung (redialNow): no failure of the
		// peer's; the writer dials again at once (the move, or the
		// sighting, kicked it).
		return false
	}
	c.counters.connectFailures.Add(1)
	c.hl.failed(err.Error(), time.Now())
	c.t.log.Debug("internode: connect failed", "peer", c.peer.id, "lane", c.lane, "err", err)
	if refusedForGood(err) {
		// Waiting will not help: fail what is queued now.
		reason := reasonOf(err)
		if reason == ReasonUnknownPeer && c.peer.member.Load() {
			// The membership no longer has a member: it left, its Leave
			// on its way (the membership changes before it tells) or
			// come before this entry was made. What is queued fails as
			// the Leave fails it.
			reason, err = ReasonPeerLeft, fmt.Errorf("%w: the membership no longer has it", ErrPeerLeft)
		}
		c.failQueued(reason, err)
	} else if c.t.closing.Load() {
		// Shutdown waits for what is queued to be written: it cannot wait
		// for a peer that may be away for good. It fails here as requests
		// do, each to OnDropped (a hint to keep), so Shutdown drains.
		c.failQueued(ReasonConnectionReset, fmt.Errorf("cannot connect while shutting down: %w", err))
	} else {
		// The peer may come back, or come to know this node: one-way
		// messages wait for it until they expire. Requests fail now —
		// none was written, and their callers (a database deciding whom
		// to ask next) are better served by the dial's error than by
		// their deadline.
		c.pruneExpired()
		reason := ReasonConnectionReset
		if isBusy(err) {
			// The peer answered, with no room for the connection or
			// shutting down: none of them reached it, which overloaded
			// says (as OpenStream and SendFile read the same refusal),
			// where reset would leave their callers unsure whether they
			// ran.
			reason = ReasonOverloaded
		}
		c.failRequests(reason, fmt.Errorf("cannot connect: %w", err))
	}
	return false
}

// refusedForGood reports whether waiting will not change a dial's error:
// the peer refused the handshake, or this node does not know the peer.
// A peer whose membership does not know this node yet (its gossip has not
// caught up), or that has no room for the connection now, is not refusing
// for good.
func refusedForGood(err error) bool {
	var he *HandshakeError
	if errors.As(err, &he) && (he.Reason == wire.UnknownNode || he.Reason == wire.Busy) {
		return false
	}
	return errors.Is(err, ErrRefused) || errors.Is(err, ErrUnknownPeer)
}

// isBusy reports whether err is the peer's refusal for want of room
// (wire.Busy).
func isBusy(err error) bool {
	var he *HandshakeError
	return errors.As(err, &he) && he.Reason == wire.Busy
}

func (c *outConn) dial() (_ *liveConn, err error) {
	ctx, cancel := context.WithCancel(c.ctx)
	var addr string
	if m, ok := c.t.cfg.Membership.Lookup(c.peer.id); ok {
		addr = m.Addr // what dialAgreeing dials, unless it changes meanwhile (moved)
	}
	c.dialMu.Lock()
	c.dialCancel, c.dialStart, c.dialAddr = cancel, time.Now(), addr
	c.dialResumed, c.sightingCut = c.sightingCut, false
	c.dialMu.Unlock()
	c.hl.dialing(c.dialStart)
	defer func() {
		c.dialMu.Lock()
		c.dialCancel = nil
		if err == nil {
			c.sightingCut = false // not cut after all
		}
		c.dialMu.Unlock()
		cancel()
	}()
	nc, caps, err := c.awaitDial(func() (net.Conn, wire.Capabilities, error) {
		return c.t.dialAgreeing(ctx, c.peer.id, uint8(c.lane))
	})
	if err != nil {
		return nil, err
	}
	lc := &liveConn{Conn: nc, serial: c.t.nextConnID.Add(1), caps: caps, addr: addr, probe: c.t.probeFor(nc), sendBound: newQueueBound(nc)}
	lc.heard.Store(monoNanos())
	return lc, nil
}

// awaitDial runs dial, which its context ends, on a goroutine of its own
// and waits for it, failing the queued messages that expire meanwhile: a
// dial to a peer that drops the SYN lasts Timeouts.Dial, and a message
// left for the dial's failure held its capacity past its deadline, and
// kept a Shutdown waiting for it.
func (c *outConn) awaitDial(dial func() (net.Conn, wire.Capabilities, error)) (net.Conn, wire.Capabilities, error) {
	type dialed struct {
		nc   net.Conn
		caps wire.Capabilities
		err  error
	}
	done := make(chan dialed, 1)
	go func() { // waited for below, before the writer may exit
		nc, caps, err := dial()
		done <- dialed{nc, caps, err}
	}()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var expired <-chan time.Time
		if at := c.nextExpiry(); at != 0 {
			wait := time.Duration(max(at-monoNanos(), 0))
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			expired = timer.C
		}
		select {
		case d := <-done:
			return d.nc, d.caps, d.err
		case <-c.wake:
			// A message queued meanwhile may expire before the others; a
			// caller may have given up.
			c.signaled.Store(false)
			c.applyWithdrawals()
		case <-expired:
			c.pruneExpired()
			c.t.signalDrained()
		}
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
	if c.proved() {
		c.backoff.Reset() // the connection worked: the next failure starts afresh
	}
	c.conn.kill(why)
	c.controlEnded() // after the kill, which a waiting reader then sees
	c.conn = nil
	c.live.Store(nil)
	c.peer.sendPeak[c.lane].Observe(0) // no socket, no queue: not the dead one's backlog
	c.hl.idle(time.Now())
	c.large.reset(&c.queue, c, ErrConnectionReset)
}

// connDied closes a connection that broke or was judged dead. Requests
// written on it fail at once — their response may never come, and a
// request cannot be resent blindly — and the lane redials at once if the
// connection proved itself, or else after its backoff, which a successful
// dial does not reset: a peer that takes the handshake and then hangs up,
// or says nothing, again and again, would otherwise be redialled at once,
// for as long as a message waits for it.
func (c *outConn) connDied() {
	serial, why, proved := c.conn.serial, "closed", c.proved()
	if w := c.conn.why.Load(); w != nil {
		why = *w
	}
	// A lane being stopped leaves its queue to peer.stop, which fails it
	// with its own reason (closed, peer left).
	moved := c.conn.moved.Load()
	unused := !proved && !moved && c.frames.written == c.writtenAt && c.ctx.Err() == nil
	c.closeConn(why)
	if !moved {
		// A connection this node closed because the peer moved is no
		// failure of the peer's: counted as one, the lane stayed failing
		// (Health: down) after the writer went idle, though the peer was
		// alive at its new address, until something was next sent.
		c.hl.failed("connection lost: "+why, time.Now())
	}
	c.t.calls.failConn(serial, fmt.Errorf("%w: %s", ErrConnectionReset, why))
	c.backoffFirst = !proved && !moved // a move is redialled at once, as moved promises
	c.diedAt = time.Now()
	if unused {
		// It ended, not for a move of this node's seeing, before
		// anything was written on it or its peer proved alive (a peer
		// that takes the handshake and hangs up): as good as a failed
		// dial, which fails the queued requests, never written, at once.
		// The writer writes nothing into a dead connection (run, flush),
		// so nothing else would fail them before their deadline, however
		// many redials end this way.
		c.pruneExpired()
		c.failRequests(ReasonConnectionReset, fmt.Errorf("cannot connect: the connection ended before anything was written: %s", why))
	}
}

// proved reports whether the connection worked: its peer was heard on it
// (the acceptor beats right behind its reply), and it lived for a
// keepalive interval, in which a live peer beats again. A peer that beats
// and hangs up at once proves nothing.
func (c *outConn) proved() bool {
	return c.conn.answered.Load() && time.Since(c.connectedAt) >= wire.KeepaliveInterval
}

// sleepBackoff waits before the next connection attempt: capped
// exponential with jitter, less what was spent since the failure it
// follows (a lane that had nothing to send for longer dials at once), cut
// short when the peer is seen again. Messages that expire meanwhile fail
// at their deadline: left for the next failed dial, they held their
// capacity for up to MaxBackoff past it, and a Shutdown waiting for them
// waited out its context and failed them as closed.
func (c *outConn) sleepBackoff(spent time.Duration) {
	d := c.backoff.Next(c.random) - spent
	if d <= 0 {
		return
	}
	c.hl.backoff(time.Now(), d)
	end := monoNanos() + int64(d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		now := monoNanos()
		if now >= end {
			return
		}
		wait := end - now
		if at := c.nextExpiry(); at != 0 {
			wait = min(wait, max(at-now, 0))
		}
		timer.Reset(time.Duration(wait))
		select {
		case <-c.stop:
			return
		case <-c.kick:
			c.backoff.Reset()
			return
		case <-c.wake:
			// A message queued meanwhile may expire before those the
			// timer was set for; a caller may have given up.
			c.signaled.Store(false)
			c.applyWithdrawals()
			continue
		case <-timer.C:
		}
		c.pruneExpired()
		c.t.signalDrained()
	}
}

// nextExpiry returns a moment at or before the earliest deadline of the
// messages the lane holds (monoNanos), or 0 when none has one.
func (c *outConn) nextExpiry() int64 {
	at := c.queue.nextExpiry()
	if c.lane == routing.Large {
		if l := c.large.nextExpiry(); l != 0 && (at == 0 || l < at) {
			at = l
		}
	}
	return at
}
