package transport

import (
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// SocketConfig holds socket options; zero fields leave the system's
// defaults, but for NotSentLowat on the urgent and small lanes. Larger
// buffers absorb bursts, but a receive buffer the application does not
// drain costs memory and, when full, makes the kernel collapse and then
// prune its queue (the TcpExt TCPRcvCollapsed and RcvPruned counters; see
// tcp_rmem in the kernel's Documentation/networking/ip-sysctl.rst).
type SocketConfig struct {
	SendBuffer int // SO_SNDBUF, bytes; above 2 GiB - 1, the most the option holds, it sets that
	// ReceiveBuffer is SO_RCVBUF, bytes. It is set once a connection is
	// open (the lanes share one listener, and an accepted connection's
	// lane is known from its hello), where tcp(7) asks for it before
	// connect or listen: the handshake has offered the system's initial
	// window by then (64 KiB with net.ipv4.tcp_rmem's default), which a
	// smaller buffer cannot take back, so a peer may send more than it
	// holds while this node does not read, and Linux drops what arrives
	// past it, acknowledgments included (a test peer so set to 16 KiB
	// stalled its own writes in 4 of about 320 runs under load). Keep it
	// at 64 KiB or more, or 0 for the system's autotuning. Above 2 GiB - 1,
	// the most the option holds, it sets that.
	ReceiveBuffer int
	// UserTimeout is TCP_USER_TIMEOUT: how long unacknowledged data may
	// wait before the connection fails; at most about 24.8 days. 0 takes
	// Timeouts.Write on the connections this node opens and
	// Timeouts.Keepalive on those it accepts, if positive; negative sets none (the
	// system's retransmission limits decide).
	UserTimeout time.Duration
	KeepAlive   time.Duration // TCP keep-alive idle time, at most 32767 s (about 9.1 hours); negative disables keep-alive
	// NotSentLowat is TCP_NOTSENT_LOWAT, bytes, on the connections this
	// node opens on the lane: the socket takes more of the queue only
	// while fewer bytes than this wait in it unsent. Bytes in the
	// kernel are beyond the limits, and a message's time there does not
	// count against its deadline (see Message.ExpiresAt): behind a peer
	// that pauses reading, a send queue of megabytes held messages that
	// reached their handlers seconds after their callers gave up.
	// Bytes in flight, which a long fast link needs, are not limited.
	// Default DefaultNotSentLowat on the urgent and small lanes, none on
	// the large lane (its messages are written once the receiver has
	// room for them); negative: the system's (no limit unless
	// net.ipv4.tcp_notsent_lowat says). Above 2 GiB - 1, the most the
	// option holds, it sets that.
	NotSentLowat int
}

// DefaultNotSentLowat is the urgent and small lanes' default
// SocketConfig.NotSentLowat.
const DefaultNotSentLowat = 128 << 10

// maxUserTimeout is the longest SocketConfig.UserTimeout, about 24.8
// days: the kernel takes TCP_USER_TIMEOUT in milliseconds, as a 32-bit
// int. A socket's default taken from a longer Timeouts.Write or Keepalive
// is this.
const maxUserTimeout = math.MaxInt32 * time.Millisecond

// maxKeepAlive is the longest SocketConfig.KeepAlive: Linux refuses a
// longer TCP_KEEPIDLE (MAX_TCP_KEEPIDLE), and the dial with it.
const maxKeepAlive = 32767 * time.Second

// withUserTimeout returns s with UserTimeout d, at most maxUserTimeout,
// if s sets none and d is positive: a default from Config.Timeouts.
func (s SocketConfig) withUserTimeout(d time.Duration) SocketConfig {
	if s.UserTimeout == 0 && d > 0 {
		s.UserTimeout = min(d, maxUserTimeout)
	}
	return s
}

// applyOutbound sets the options that apply only to the connections
// this node opens.
func (s SocketConfig) applyOutbound(conn *net.TCPConn) error {
	if s.NotSentLowat > 0 {
		if err := sockstat.SetNotSentLowat(conn, s.NotSentLowat); err != nil && !errors.Is(err, sockstat.ErrUnsupported) {
			return err
		}
	}
	return nil
}

// apply sets the options on conn.
func (s SocketConfig) apply(conn *net.TCPConn) error {
	// Sizes past what the options hold (a C int) ask for the largest:
	// setsockopt would keep only their low 32 bits.
	if s.SendBuffer > 0 {
		if err := conn.SetWriteBuffer(min(s.SendBuffer, math.MaxInt32)); err != nil {
			return err
		}
	}
	if s.ReceiveBuffer > 0 {
		if err := conn.SetReadBuffer(min(s.ReceiveBuffer, math.MaxInt32)); err != nil {
			return err
		}
	}
	if s.UserTimeout > 0 {
		if err := sockstat.SetUserTimeout(conn, s.UserTimeout); err != nil && !errors.Is(err, sockstat.ErrUnsupported) {
			return err
		}
	}
	switch {
	case s.KeepAlive < 0:
		return conn.SetKeepAlive(false)
	case s.KeepAlive > 0:
		return conn.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: s.KeepAlive})
	}
	return nil
}

// Limits bound the bytes a node holds for messages in one direction, in
// three nested tiers: every byte a connection holds is also its peer's and
// the node's. So the node never holds more than Node, one peer never more
// than PerPeer however many connections it opens, and one urgent or small
// lane never more than PerConnection. The large lane may hold what its
// peer's other two lanes may not: PerPeer − 2×PerConnection (Node in
// place of PerPeer when it is less), outbound less the eighth the node's
// own sends leave to responses (see below), inbound less what stream
// connections hold of that room (OpenStream: the peer's of PerPeer, every
// peer's of Node), and at least PerConnection; so a peer's large messages
// never take the room of its small ones. A connection holding nothing may
// take one message larger than its limit (up to MaxMessageSize), so a
// large message always gets through.
//
// Outbound, the bytes held are the encoded messages queued or being
// written (a large message's payload is the caller's buffer, held until
// written), the node's own and its responses alike. The node's own sends
// leave an eighth of Node and of PerPeer to its responses (less, when
// that would leave no room for a message of MaxMessageSize): bulk sends
// that fill the node's room, to a peer that stopped reading say, do not
// turn every response it owes its other peers into ErrOverloaded.
// Inbound, they are the buffers of frames and messages received, from the
// moment they are allocated — capacity is taken first — until every
// handler of their messages has returned, responses included. See the
// package documentation for the one exception (OverloadReject).
type Limits struct {
	PerConnection int64 // bytes; default 4 MiB
	PerPeer       int64 // bytes, all of a peer's connections; default 64 MiB
	Node          int64 // bytes, all peers; default 256 MiB
}

// forLane returns the limit of one connection of lane: on the large lane
// what the peer's other two lanes leave of its room, which Node bounds
// too when it is below PerPeer.
func (l Limits) forLane(lane routing.Lane) int64 {
	if lane == routing.Large {
		return max(l.PerConnection, min(l.PerPeer, l.Node)-2*l.PerConnection)
	}
	return l.PerConnection
}

// forSends returns the limit of one outbound lane of the node's own sends
// (outConn), for limits that are outbound ones: forLane, less, on the large
// lane, the reserve a peer's sends leave to responses (responseReserve),
// which sends cannot use. Without it the large lane alone could take all
// the room sends have at the peer (with the default limits exactly: 56 MiB
// of 64 MiB less 8 MiB), and a large lane waiting for grants from a peer
// whose large handlers stall left its urgent and small lanes none. With
// Node below PerPeer the node's room for sends is the tighter one.
func (l Limits) forSends(lane routing.Lane, maxMessage int) int64 {
	if lane == routing.Large {
		room := min(l.PerPeer-responseReserve(l.PerPeer, maxMessage), l.Node-responseReserve(l.Node, maxMessage))
		return max(l.PerConnection, room-2*l.PerConnection)
	}
	return l.forLane(lane)
}

// DefaultLimits returns the default limits. They bound queueing as well
// as memory: a small lane holds at most 4 MiB each way — about 25,000
// messages of 128 bytes, tens of milliseconds of work for a handler.
func DefaultLimits() Limits {
	return Limits{PerConnection: 4 << 20, PerPeer: 64 << 20, Node: 256 << 20}
}

func (l *Limits) setDefaults() {
	d := DefaultLimits()
	setDefault(&l.PerConnection, d.PerConnection)
	setDefault(&l.PerPeer, d.PerPeer)
	setDefault(&l.Node, d.Node)
}

// validate checks that the limits can hold the largest unit one
// connection must admit at once — outbound a message of maxMessage bytes
// with its header and its queue entry, inbound its payload or a whole
// frame — or that connection would wait for room forever.
func (l Limits) validate(side string, maxMessage int) error {
	if l.PerConnection <= 0 || l.PerPeer <= 0 || l.Node <= 0 {
		return fmt.Errorf("transport: config: %s limits must be positive", side)
	}
	unit := outboundUnit(maxMessage)
	if side == "inbound" {
		unit = int64(max(maxMessage, wire.DefaultMaxFramePayload))
	}
	if unit > min(l.PerPeer, l.Node) {
		return fmt.Errorf("transport: config: %s limits (%d per peer, %d per node) cannot hold %d bytes: a message of MaxMessageSize with its header and queue entry, or a frame",
			side, l.PerPeer, l.Node, unit)
	}
	return nil
}

// outboundUnit is the outbound room one message of maxMessage bytes
// takes. A queued message holds its queue entry too (outItemCost): limits
// that held only the encoding would refuse, as never fitting, a message of
// maxMessage whose header the trace context filled.
func outboundUnit(maxMessage int) int64 {
	return int64(maxMessage + wire.MaxHeaderSize + outItemCost)
}

// responseReserve is the part of an outbound Node or PerPeer limit that
// the node's own sends leave to the responses it owes its peers (see
// Limits): an eighth, less what would leave the sends no room for one
// message of maxMessage.
func responseReserve(limit int64, maxMessage int) int64 {
	return max(0, min(limit/8, limit-outboundUnit(maxMessage)))
}

// OverloadPolicy says what a receiver out of inbound capacity does.
type OverloadPolicy uint8

const (
	// OverloadPause stops reading the connection until capacity is free.
	OverloadPause OverloadPolicy = iota
	// OverloadReject drops the message and answers ErrOverloaded: a
	// request fails with it; a one-way message's sender counts it, one
	// of a batch frame (urgent and small lanes) written already, in
	// ConnStats.RemoteDropped, and a large one, refused at its header
	// before its payload is written, in ConnStats.Dropped, handing it to
	// Config.OnDropped. A rejected batch frame is answered once it
	// has come whole; a compressed one, held whole while it comes, waits,
	// reading paused, while other rejected compressed frames hold the
	// 2 MiB the node gives them (see the package documentation).
	OverloadReject
)
