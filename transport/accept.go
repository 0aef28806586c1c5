package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Refusal says why an inbound connection was turned away before it
// carried anything; Stats.Refusals counts each.
type Refusal uint8

const (
	RefusedVersion     Refusal = iota // no common protocol version
	RefusedCluster                    // another cluster's node
	RefusedUnknownNode                // not a member (unless Config.Security.AcceptUnknownPeers)
	RefusedIdentity                   // the certificate names another node
	RefusedLane                       // an unknown connection kind
	RefusedMalformed                  // not a valid Hello: bad magic, checksum, length...
	RefusedTimeout                    // the handshake did not finish within Config.Timeouts.Handshake
	RefusedTLS                        // the TLS handshake failed: plain text, bad certificate...
	RefusedTooMany                    // too many unfinished handshakes, or connections (Config.Security.MaxConns...)
	RefusedSelf                       // the peer claims this node's own ID
	NumRefusals        = iota
)

// probed stands for a connection that closed before sending a byte (a
// port probe, a load balancer's health check): not a refusal, nor bad
// input, it is counted apart (Stats.InboundProbes) and logged only at
// debug level.
const probed = Refusal(NumRefusals)

var refusalNames = [NumRefusals + 1]string{"version", "cluster", "unknown_node", "identity", "lane",
	"malformed", "timeout", "tls", "too_many", "self", "probe"}

// String returns the refusal's metric label.
func (r Refusal) String() string {
	if int(r) < len(refusalNames) {
		return refusalNames[r]
	}
	return "unknown"
}

// refuse counts and logs a refused inbound connection (or a probe); the
// log is rate limited per reason, so a flood of bad handshakes cannot
// flood it.
func (t *Transport) refuse(conn net.Conn, why Refusal, err error) {
	if why == probed {
		t.probes.Add(1)
		t.log.Debug("internode: connection closed before its handshake", "remote", conn.RemoteAddr())
		return
	}
	t.refusals[why].Add(1) // InboundRefused is their sum: one counter, one count
	t.logs.warn(logKey{refusal: why + 1}, "internode: connection refused", "remote", conn.RemoteAddr(), "reason", why.String(), "err", err)
}

func (t *Transport) acceptLoop() {
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.closed:
				return
			default:
			}
			if t.finishing.Load() {
				return // a finishing Shutdown closed the listener (finishInbound)
			}
			if acceptRetryable(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t.log.Warn("internode: accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-t.closed:
					return
				}
				continue
			}
			t.log.Error("internode: accept failed; no longer accepting", "err", err)
			return
		}
		delay = 0
		h, cut := t.startHandshake(conn, remoteHost(conn))
		if cut != nil {
			cut.conn.Close() // its serveConn counts the refusal
		}
		if h == nil {
			t.refuse(conn, RefusedTooMany, nil)
			conn.Close()
			continue
		}
		if !t.trackInbound(conn, true) {
			t.endHandshake(h)
			conn.Close()
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.trackInbound(conn, false)
			defer conn.Close()
			t.serveConn(conn, h)
		}()
	}
}

// acceptRetryable reports whether an Accept error leaves the listener
// able to accept the next connection: a deadline; descriptors or kernel
// memory running out, which come back; or a network error of the one
// connection being accepted, which accept(2) on Linux reports in its
// place (and asks to be retried, as for EAGAIN). Stopping on any of
// these would refuse every peer from then on, until a restart.
func acceptRetryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, errno := range acceptRetryErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// acceptRetryErrnos are the Accept errors acceptRetryable retries besides
// a deadline.
var acceptRetryErrnos = []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
	syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP,
	syscall.ENETDOWN, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.EHOSTUNREACH, syscall.EPERM}

func remoteHost(conn net.Conn) string { return remoteHostOf(conn.RemoteAddr()) }

// remoteHostOf names the host a connection came from, for the per-host
// bound on unfinished handshakes: an IPv4 address, or an IPv6 address's
// /64, since a single host is commonly given a whole /64. An address
// that is not a *net.TCPAddr (Config.Listen's: an in-memory network's, a
// wrapping listener's) is taken as "host:port" when it is one, and its
// port left out, so that each connection of one host is not a host of
// its own.
func remoteHostOf(addr net.Addr) string {
	var ip netip.Addr
	if a, ok := addr.(*net.TCPAddr); ok {
		if ip, ok = netip.AddrFromSlice(a.IP); !ok {
			return a.IP.String()
		}
	} else {
		host, _, err := net.SplitHostPort(addr.String())
		if err != nil {
			return addr.String() // no port: a pipe's, a Unix socket's
		}
		if ip, err = netip.ParseAddr(host); err != nil {
			return host // a host name
		}
	}
	ip = ip.Unmap()
	if ip.Is6() {
		prefix, _ := ip.Prefix(64)
		return prefix.String()
	}
	return ip.String()
}

// A pendingHandshake is an accepted connection whose handshake has not
// finished, in Transport.pendingByHost.
type pendingHandshake struct {
	conn net.Conn
	host string
	seq  uint64 // admission order
	cut  bool   // closed to make room for another host's (startHandshake)
}

// errHandshakeCut is why a handshake closed to make room for another
// host's is counted RefusedTooMany.
var errHandshakeCut = errors.New("unfinished handshake closed to make room for a host holding fewer")

// startHandshake admits conn, one more unfinished handshake from host,
// within Config.Security.MaxPendingHandshakes and
// MaxPendingHandshakesPerHost, so that a flood of idle sockets cannot
// exhaust the node. With MaxPendingHandshakes reached, the oldest of the
// host holding the most makes room for it if that host holds at least two
// more than host: the connection to close is returned as cut. So a few
// hosts cannot keep every other peer out, and hosts holding as many as
// one another do not trade places.
func (t *Transport) startHandshake(conn net.Conn, host string) (h, cut *pendingHandshake) {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	mine := len(t.pendingByHost[host])
	if mine >= t.cfg.Security.MaxPendingHandshakesPerHost {
		return nil, nil
	}
	if t.pendingHandshakes >= t.cfg.Security.MaxPendingHandshakes {
		most := t.mostPendingLocked()
		if len(most) < mine+2 {
			return nil, nil
		}
		cut = most[0]
		cut.cut = true
		t.dropPendingLocked(cut)
	}
	t.pendingSeq++
	h = &pendingHandshake{conn: conn, host: host, seq: t.pendingSeq}
	t.pendingByHost[host] = append(t.pendingByHost[host], h)
	t.pendingHandshakes++
	return h, cut
}

// mostPendingLocked returns the unfinished handshakes of the host that
// holds the most, of those the one whose oldest is oldest.
func (t *Transport) mostPendingLocked() []*pendingHandshake {
	var most []*pendingHandshake
	for _, hs := range t.pendingByHost {
		if len(hs) > len(most) || len(hs) == len(most) && hs[0].seq < most[0].seq {
			most = hs
		}
	}
	return most
}

func (t *Transport) dropPendingLocked(h *pendingHandshake) {
	hs := slices.DeleteFunc(t.pendingByHost[h.host], func(o *pendingHandshake) bool { return o == h })
	if len(hs) == 0 {
		delete(t.pendingByHost, h.host)
	} else {
		t.pendingByHost[h.host] = hs
	}
	t.pendingHandshakes--
}

// endHandshake takes h out of the unfinished handshakes, and reports
// whether startHandshake did already, closing its connection.
func (t *Transport) endHandshake(h *pendingHandshake) (cut bool) {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	if h.cut {
		return true
	}
	t.dropPendingLocked(h)
	return false
}

// serveConn handshakes an accepted connection and serves it until it ends.
func (t *Transport) serveConn(raw net.Conn, h *pendingHandshake) {
	conn, hello, p, err := t.acceptHandshake(raw)
	cut := t.endHandshake(h)
	if err != nil {
		if cut {
			// Closed unfinished (startHandshake); a handshake that
			// finished first is served, and ends at its first read.
			err = &refusalError{RefusedTooMany, errHandshakeCut}
		}
		if t.ctx.Err() != nil {
			// This node's Close cut the handshake short (it cancels the
			// context before it closes the connections): no fault of the
			// peer's, to count or log as a refusal.
			return
		}
		var r *refusalError
		if errors.As(err, &r) {
			t.refuse(raw, r.why, r.err)
		} else {
			t.refuse(raw, RefusedMalformed, err)
		}
		return
	}
	released := false
	release := func() { // at most once: serveFile may give the claim back early
		if !released {
			released = true
			t.releaseConn(p, hello.Lane)
		}
	}
	defer release()
	if conn != raw {
		defer conn.Close() // the TLS layer: sends close_notify
	}
	// The peer is reachable: a writer of ours waiting to reconnect to it
	// tries at once, and a silent connection to it is replaced — whatever
	// kind of connection the peer opened.
	p.reconnected()
	switch hello.Lane {
	case laneStreams:
		t.serveStreams(conn, p)
		return
	case laneFile:
		t.serveFile(conn, p, hello.Capabilities&t.offers(hello.Lane), release)
		return
	case laneOwnStream:
		if tcp, ok := raw.(*net.TCPConn); ok {
			if err := t.setOwnStreamUserTimeout(tcp); err != nil {
				t.log.Warn("internode: socket options", "peer", p.id, "err", err)
			}
		}
		t.serveOwnStream(conn, p)
		return
	}
	lane := routing.Lane(hello.Lane)
	if watched(lane) {
		if conn == raw {
			conn = t.wrapForWaking(conn)
			defer conn.Close() // and out of the waker's set
		}
		t.watchForWaking(conn)
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		// This end only writes beats: unacknowledged for that long, the
		// sender is gone.
		sc := t.cfg.Lanes.Sockets[lane].withUserTimeout(t.cfg.Timeouts.Keepalive)
		if err := sc.apply(tcp); err != nil {
			t.log.Warn("internode: socket options", "peer", p.id, "lane", lane, "err", err)
		}
	}
	ic := newInConn(t, p, lane, conn, hello.Capabilities&t.offers(hello.Lane))
	tracked := t.trackInConn(ic, true)
	t.answeredEnd(true) // in inConns now, or the transport closed
	if !tracked {
		return
	}
	defer t.trackInConn(ic, false)
	if !t.cfg.Security.AcceptUnknownPeers && !t.isMember(p.id) {
		// It left since its handshake was checked, before this
		// connection could be found (closeInboundFrom): not served.
		ic.kill()
		return
	}
	ic.serve()
}

// refusalError is a refused handshake with its counted reason.
type refusalError struct {
	why Refusal
	err error
}

func (e *refusalError) Error() string { return e.why.String() + ": " + e.err.Error() }
func (e *refusalError) Unwrap() error { return e.err }

// acceptHandshake runs the TLS handshake (when configured) and reads and
// answers the Hello, all within Timeouts.Handshake. It returns the
// connection to use from then on and the peer, with one of its
// connections of the Hello's kind claimed (see claimConn).
func (t *Transport) acceptHandshake(raw net.Conn) (net.Conn, wire.Hello, *peer, error) {
	conn, hello, p, err := t.acceptHello(raw)
	if err != nil && p != nil {
		t.releaseConn(p, hello.Lane)
		p = nil
	}
	return conn, hello, p, err
}

func (t *Transport) acceptHello(raw net.Conn) (net.Conn, wire.Hello, *peer, error) {
	deadline := time.Now().Add(t.cfg.Timeouts.Handshake)
	if t.tls != nil {
		// Under TLS before the lane is known: it is watched only if the
		// lane is an urgent or small one (see wake.go).
		raw = t.wrapForWaking(raw)
	}
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, wire.Hello{}, nil, err
	}
	conn := raw
	var tlsConn *tls.Conn
	if t.tls != nil {
		// A plain-text internode peer gets a clear refusal, not a TLS
		// alert it cannot read.
		var magic [4]byte
		if n, err := io.ReadFull(raw, magic[:]); err != nil {
			why := RefusedTLS
			if n == 0 && hungUp(err) {
				why = probed
			}
			return nil, wire.Hello{}, nil, &refusalError{timeoutOr(err, why), err}
		}
		if binary.BigEndian.Uint32(magic[:]) == wire.Magic {
			reply := wire.Reply{Reason: wire.Refused, Message: "this node requires TLS"}
			_, _ = raw.Write(wire.AppendReply(nil, &reply))
			return nil, wire.Hello{}, nil, &refusalError{RefusedTLS, errors.New("plain-text peer")}
		}
		pc := &prefixConn{Conn: raw, prefix: magic[:], handshaking: true, handshakeLeft: maxTLSHandshake - len(magic)}
		raw = pc
		tlsConn = tls.Server(raw, t.tls.server) // verifies the chain
		ctx, cancel := context.WithDeadline(t.ctx, deadline)
		err := tlsConn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return nil, wire.Hello{}, nil, &refusalError{timeoutOr(err, RefusedTLS), err}
		}
		pc.handshaking = false // the peer is proven
		conn = tlsConn
	}
	buf := make([]byte, wire.MaxHandshakeSize)
	var read int64
	raw2, err := wire.ReadHandshake(countingReader{r: conn, n: &read}, buf)
	if err != nil {
		if read == 0 && hungUp(err) && tlsConn == nil {
			return nil, wire.Hello{}, nil, &refusalError{probed, err}
		}
		if tlsConn == nil && errors.Is(err, wire.ErrBadMagic) {
			// ReadHandshake read the 6-byte prefix into buf.
			if refusedTLS(conn, buf[:6]) {
				return nil, wire.Hello{}, nil, &refusalError{RefusedTLS, errors.New("TLS peer: this node runs plain text")}
			}
		}
		return nil, wire.Hello{}, nil, &refusalError{timeoutOr(err, RefusedMalformed), fmt.Errorf("reading hello: %w", err)}
	}
	hello, err := wire.DecodeHello(raw2)
	if err != nil {
		return nil, wire.Hello{}, nil, &refusalError{RefusedMalformed, fmt.Errorf("decoding hello: %w", err)}
	}
	reply := wire.Reply{Reason: wire.Accepted}
	var why Refusal
	var identityErr error // the certificate against the node claimed
	if tlsConn != nil {
		identityErr = t.tls.verifyPeer(tlsConn.ConnectionState(), cluster.NodeID(hello.Node))
	}
	version, ok := wire.Negotiate(&hello)
	switch {
	case !ok:
		reply.Reason, why = wire.UnsupportedVersion, RefusedVersion
		reply.Message = fmt.Sprintf("peer speaks versions %d to %d, this node %d to %d",
			hello.MinVersion, hello.MaxVersion, wire.MinVersion, wire.MaxVersion)
	case hello.Cluster != t.cfg.ClusterName:
		reply.Reason, why = wire.WrongCluster, RefusedCluster
		reply.Message = fmt.Sprintf("this node is in cluster %q, not %q", t.cfg.ClusterName, hello.Cluster)
	case hello.Lane >= numKinds:
		reply.Reason, why = wire.BadLane, RefusedLane
		reply.Message = fmt.Sprintf("no lane %d", hello.Lane)
	case hello.Node == "":
		reply.Reason, why = wire.Refused, RefusedMalformed
		reply.Message = "empty node ID"
	case cluster.NodeID(hello.Node) == t.cfg.NodeID:
		reply.Reason, why = wire.Refused, RefusedSelf
		reply.Message = fmt.Sprintf("%q is this node's own ID", hello.Node)
	case identityErr != nil:
		reply.Reason, why = wire.IdentityMismatch, RefusedIdentity
		reply.Message = identityErr.Error()
	case !t.cfg.Security.AcceptUnknownPeers && !t.isMember(cluster.NodeID(hello.Node)):
		reply.Reason, why = wire.UnknownNode, RefusedUnknownNode
		reply.Message = fmt.Sprintf("node %q is not a member", hello.Node)
	default:
		reply.Version = version
		reply.Capabilities = hello.Capabilities & t.offers(hello.Lane)
		if reply.Capabilities&wire.CapAcceptorID != 0 {
			reply.Message = string(t.cfg.NodeID) // whom the initiator reached
		}
	}
	var p *peer
	if reply.Reason == wire.Accepted {
		if p, err = t.claimConn(cluster.NodeID(hello.Node), hello.Lane); err != nil {
			reply = wire.Reply{Reason: wire.Busy, Message: err.Error()}
			why = RefusedTooMany
		} else if held := t.streamConnHold(hello.Lane); held > 0 && !t.streamConnFits(held) {
			// Under these limits no wait makes room: refused for good
			// (ErrRefused), not Busy, which tells the opener to retry.
			t.logs.warn(logKey{other: logNoStreamCapacity}, "internode: refusing stream connection: inbound limits cannot hold it",
				"peer", hello.Node, "needs", held)
			reply = wire.Reply{Reason: wire.Refused, Message: fmt.Sprintf("inbound limits cannot hold a stream connection's %d bytes beside the largest message's room", held)}
			why = RefusedTooMany
		} else if held > 0 && !t.holdStreamConn(p, held) {
			// A stream connection's buffer, taken before the reply: a
			// connection accepted and then closed for want of it left
			// its opener with io.EOF; Busy tells it that this node is
			// overloaded (ErrOverloaded). acceptHandshake gives back the
			// connection's claim.
			t.logs.warn(logKey{other: logNoStreamCapacity}, "internode: refusing stream connection: no inbound capacity",
				"peer", hello.Node, "needs", held)
			reply = wire.Reply{Reason: wire.Busy, Message: fmt.Sprintf("no inbound capacity for a stream connection's %d bytes beside the largest message's room", held)}
			why = RefusedTooMany
		}
	}
	out := wire.AppendReply(buf[:0], &reply)
	answered := reply.Reason == wire.Accepted && routing.Lane(hello.Lane).Valid()
	if answered {
		// The first beat, with the reply: the initiator counts its lane
		// as connected once it hears this node on it, within a round
		// trip of a live one.
		out = wire.AppendFrameHeader(out, wire.FrameBeat, 0, nil)
		// From the reply on, the peer may write messages: a finishing
		// Shutdown reads them too (serveConn ends the count).
		t.inboundMu.Lock()
		t.answered++
		t.inboundMu.Unlock()
	}
	if _, err := conn.Write(out); err != nil {
		t.answeredEnd(answered)
		if reply.Reason == wire.Accepted {
			t.releaseStreamConn(p, t.streamConnHold(hello.Lane)) // not served: its buffer goes back
		}
		return nil, hello, p, &refusalError{timeoutOr(err, RefusedMalformed), fmt.Errorf("writing reply: %w", err)}
	}
	if reply.Reason != wire.Accepted {
		return nil, hello, p, &refusalError{why, &HandshakeError{Reason: reply.Reason, Message: reply.Message}}
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		t.answeredEnd(answered)
		t.releaseStreamConn(p, t.streamConnHold(hello.Lane)) // not served: its buffer goes back
		return conn, hello, p, err
	}
	return conn, hello, p, nil
}

// answeredEnd ends the count in answered of a message connection
// answered, if it was: served now (serveConn), or its handshake failed
// after all.
func (t *Transport) answeredEnd(answered bool) {
	if answered {
		t.inboundMu.Lock()
		defer t.inboundMu.Unlock()
		t.answered--
		t.signalDrained() // finishInbound may be waiting for it
	}
}

// streamConnHold is what an accepted stream connection of kind holds of
// its peer's inbound capacity while it is served (acceptHello takes
// it, serveStreams and serveOwnStream give it back): a session's buffer,
// or a connection of its own's read buffer; 0 for any other kind.
func (t *Transport) streamConnHold(kind uint8) int64 {
	switch kind {
	case laneStreams:
		return int64(t.cfg.Streams.SessionBuffer)
	case laneOwnStream:
		return ownStreamBuffer
	}
	return 0
}

// holdStreamConn takes n bytes, a stream connection's buffer, of p's
// inbound capacity, unless what p's stream connections, or every peer's,
// would then hold leaves less than the largest room a message may need
// (largestRoom) within the peer's, or the node's, inbound limit. What an
// open stream connection holds is given back only when it closes, while a
// large message waits until its whole room is free, first in line: one
// that needed more than the streams left would wait for as long as they
// stay open, and every later message of its peer behind it.
func (t *Transport) holdStreamConn(p *peer, n int64) bool {
	in := t.limitsIn.Load()
	room := t.largestRoom(in)
	// Both counts raised before either is compared, as both are lowered
	// on a refusal.
	peerHeld, nodeHeld := p.streamsHeld.Add(n), t.streamsHeld.Add(n)
	defer t.fitLargeLanesIn()
	if peerHeld > in.PerPeer-room || nodeHeld > in.Node-room || !p.inAccount.TryTake(n) {
		p.streamsHeld.Add(-n)
		t.streamsHeld.Add(-n)
		return false
	}
	return true
}

// streamConnFits reports whether the inbound limits could hold a stream
// connection's n bytes beside the largest message's room with no other
// stream connection open: if not, holdStreamConn never succeeds under them.
func (t *Transport) streamConnFits(n int64) bool {
	in := t.limitsIn.Load()
	room := t.largestRoom(in)
	return n <= in.PerPeer-room && n <= in.Node-room
}

// releaseStreamConn gives back what holdStreamConn took.
func (t *Transport) releaseStreamConn(p *peer, n int64) {
	p.inAccount.Release(n)
	p.streamsHeld.Add(-n)
	t.streamsHeld.Add(-n)
	t.fitLargeLanesIn()
}

// laneLimitIn is the limit of p's inbound connections of lane under in:
// on the large lane, less what stream connections hold of the same room,
// p's of PerPeer and every peer's of Node, for as long as they are open,
// so that its large messages still leave its urgent and small lanes
// their room (see Limits).
func (p *peer) laneLimitIn(in *Limits, lane routing.Lane) int64 {
	if lane == routing.Large {
		room := min(in.PerPeer-p.streamsHeld.Load(), in.Node-p.t.streamsHeld.Load())
		return max(in.PerConnection, room-2*in.PerConnection)
	}
	return in.forLane(lane)
}

// fitLargeLanesIn sets the limits of the inbound large-lane connections
// anew once stream connections took or gave back room: every peer's,
// since every peer's large lane shares Node with the streams.
func (t *Transport) fitLargeLanesIn() {
	t.inboundMu.Lock()
	defer t.inboundMu.Unlock()
	for ic := range t.inConns {
		if ic.lane == routing.Large {
			ic.setLimits()
		}
	}
}

// largestRoom is the most inbound capacity one message's frame or large
// message may wait for under limits in: a large message waits for its
// buffer's size class (bufpool.Cap), or for its length when the class
// does not fit within the peer's and the node's limits, and its parameter
// block within this room (withParams).
func (t *Transport) largestRoom(in *Limits) int64 {
	size := t.cfg.Memory.MaxMessageSize
	return int64(max(min(bufpool.Cap(size), int(min(in.PerPeer, in.Node))), size, wire.DefaultMaxFramePayload))
}

// refusedTLS answers a TLS ClientHello, whose record header starts
// prefix, with a fatal handshake_failure alert, and reports whether it was
// one. A TLS node dialling this plain-text one then learns that it is
// refused for good, as a plain-text node dialling a TLS one does from its
// Reply; closed on without a word, it could not tell this from a peer with
// no room for it now, and would dial again and again. The rest of the
// record is read first (within the handshake's deadline), so that closing
// with it unread does not reset the connection before the alert is read.
func refusedTLS(conn net.Conn, prefix []byte) bool {
	const recordHandshake, maxRecord = 0x16, 1<<14 + 2048
	if len(prefix) < 6 || prefix[0] != recordHandshake || prefix[1] != 3 {
		return false
	}
	n := int(binary.BigEndian.Uint16(prefix[3:]))
	if n == 0 || n > maxRecord {
		return false
	}
	if _, err := io.CopyN(io.Discard, conn, int64(5+n-len(prefix))); err != nil {
		return true // a TLS peer that went away: nothing to answer
	}
	alert := []byte{0x15, 3, 3, 0, 2, 2, 40} // alert, TLS 1.2 record, fatal, handshake_failure
	_, _ = conn.Write(alert)
	return true
}

// prefixConn gives back bytes already read from a connection before
// reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
	// arr, once the connection serves (newInConn), is its reader's
	// arrivals: the bytes read from the socket, encrypted, are counted
	// there, as its receive queue's depth counts them; and while it has
	// marks a read stops at the end of the TLS record it is in, so that
	// tls.Conn's read-ahead does not carry the count past the frame
	// being read by more than that record. Owned by the reader, the only
	// one to read once the handshake is done.
	arr *arrivals
	rec tlsRecords
	// handshakeLeft, while the TLS handshake runs (handshaking), is how
	// many more bytes it may read from the peer (see maxTLSHandshake).
	handshaking   bool
	handshakeLeft int
}

// maxTLSHandshake bounds what an accepted connection's TLS handshake
// reads from its peer, not yet proven: crypto/tls would buffer a client
// Certificate message of up to 256 KiB, from each unfinished handshake
// (MaxPendingHandshakes of them). A client's whole flight, its chain
// included, is a few KiB.
const maxTLSHandshake = 64 << 10

// errTLSHandshakeTooLarge refuses a TLS handshake past maxTLSHandshake.
var errTLSHandshakeTooLarge = fmt.Errorf("transport: TLS handshake larger than %d bytes", maxTLSHandshake)

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.rec.advance(b[:n])
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.arr != nil && len(c.arr.marks) > 0 {
		b = b[:c.rec.limit(len(b))]
	}
	if c.handshaking {
		if c.handshakeLeft == 0 {
			return 0, errTLSHandshakeTooLarge
		}
		b = b[:min(len(b), c.handshakeLeft)]
	}
	n, err := c.Conn.Read(b)
	if c.handshaking {
		c.handshakeLeft -= n
	}
	c.rec.advance(b[:n])
	if c.arr != nil {
		c.arr.read += int64(n)
	}
	return n, err
}

// tlsRecords follows the TLS records of a stream, from its first byte:
// a 5-byte header whose last two bytes give the length of the body
// that follows.
type tlsRecords struct {
	header [5]byte
	have   int // header bytes seen of the next record
	left   int // body bytes left of the current record
}

// advance follows the stream over p.
func (r *tlsRecords) advance(p []byte) {
	for len(p) > 0 {
		if r.left > 0 {
			k := min(r.left, len(p))
			r.left -= k
			p = p[k:]
			continue
		}
		k := copy(r.header[r.have:], p)
		r.have += k
		p = p[k:]
		if r.have == len(r.header) {
			r.left, r.have = int(r.header[3])<<8|int(r.header[4]), 0
		}
	}
}

// limit returns how many of want bytes a read may take without going
// past the current record (or, between records, the next one's header).
func (r *tlsRecords) limit(want int) int {
	if r.left > 0 {
		return min(want, r.left)
	}
	return min(want, len(r.header)-r.have)
}

func (t *Transport) isMember(id cluster.NodeID) bool {
	_, ok := t.cfg.Membership.Lookup(id)
	return ok
}

// timeoutOr classifies a handshake error: a deadline is RefusedTimeout.
func timeoutOr(err error, otherwise Refusal) Refusal {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return RefusedTimeout
	}
	return otherwise
}
