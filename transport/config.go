package transport

import (
	"crypto/tls"
	"net"

	"errors"
	"fmt"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"maps"
	"time"

	"github.com/xtaci/smux"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Config configures a Transport. Start from DefaultConfig and set at least
// NodeID, ClusterName, ListenAddr and Membership. New fills zero fields with
// defaults in its own copy; the caller's struct is never modified.
type Config struct {
	// NodeID names this node; it is sent in every handshake. Required.
	NodeID cluster.NodeID
	// ClusterName must match on both ends of a connection. Required, at
	// most 255 bytes.
	ClusterName string
	// ListenAddr is the TCP address to listen on, "host:port"; port 0 picks
	// one (see Transport.Addr). Required.
	ListenAddr string
	// Membership resolves peers' addresses and says when they leave.
	// Required.
	Membership cluster.Membership

	// LargeThreshold is the largest encoded message, in bytes, sent on the
	// Small lane; larger ones go to Large. Default 64 KiB; range 1 KiB to
	// 252 KiB (a small-lane message must fit in one 256 KiB frame).
	LargeThreshold int
	// LaneOverrides sends a verb's messages on a given lane (typically
	// Urgent for gossip and heartbeats) as long as they fit within
	// LargeThreshold.
	LaneOverrides map[Verb]routing.Lane
	// Coalescing returns a new strategy for one connection of the given
	// lane. Default: Disabled for the urgent lane (control traffic never
	// waits) and Adaptive for the others.
	Coalescing func(routing.Lane) coalescing.Strategy

	// MaxMessageSize is the largest payload, in bytes, sent or accepted
	// (a receiver refuses a larger one with ErrTooLarge). Bulk data is
	// better sent as a stream, with a ReaderHandler, or with SendFile.
	// Default 32 MiB; range 1 KiB to 1 GiB; the limits' PerPeer and Node
	// must hold one such message.
	MaxMessageSize int
	// Outbound bounds the bytes of messages queued or being written, per
	// connection, per peer and node-wide (see Limits). Default 4 MiB,
	// 64 MiB, 256 MiB.
	Outbound Limits
	// Inbound bounds the bytes of received messages, from their arrival
	// until their handlers have returned, per connection, per peer and
	// node-wide. Same defaults.
	Inbound Limits
	// WaitForCapacity makes Send and Request wait, until their context
	// ends, for outbound capacity instead of failing at once with
	// ErrOverloaded.
	WaitForCapacity bool
	// InboundOverload says what a receiver out of inbound capacity does:
	// OverloadPause (default) stops reading the connection until handlers
	// give capacity back, so TCP pushes back on the sender; OverloadReject
	// skips the message and tells the sender it was overloaded.
	InboundOverload OverloadPolicy

	// RequestTimeout bounds a Request whose context has no deadline.
	// Default 10 s.
	RequestTimeout time.Duration
	// VerbTimeouts overrides RequestTimeout per verb.
	VerbTimeouts map[Verb]time.Duration

	// DialTimeout bounds one TCP connect. Default 5 s.
	DialTimeout time.Duration
	// HandshakeTimeout bounds a handshake, on either side. Default 5 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes an outbound connection that wrote nothing for this
	// long. Default 60 s; negative means never.
	IdleTimeout time.Duration
	// KeepaliveTimeout is how long either end of a connection tolerates
	// hearing nothing from the other before it judges the connection dead
	// and closes it. Both ends speak at least every wire.KeepaliveInterval
	// (1 s): the sender pings when it has nothing to write, the receiver
	// beats whether or not it is reading. A dead connection's messages
	// fail (or, if not begun, wait for the next one) and the lane redials
	// at once. It also bounds how long one frame may take to arrive, so a
	// peer that trickles bytes is cut off. Default 5 s; at least 2 s;
	// negative turns the checks off (pings and beats are still sent).
	KeepaliveTimeout time.Duration
	// WriteTimeout bounds one write to a peer: a peer that stops reading
	// (a receiver whose handlers are stuck, or a hostile one) is
	// disconnected after this long, and the write's messages fail with
	// ReasonConnectionReset. It is also the default TCP_USER_TIMEOUT of
	// outbound sockets. Default 30 s; negative means never.
	WriteTimeout time.Duration
	// ReconnectMinBackoff and ReconnectMaxBackoff bound the capped
	// exponential backoff, with jitter, between connection attempts while
	// messages are pending. Defaults 50 ms and 5 s.
	ReconnectMinBackoff time.Duration
	ReconnectMaxBackoff time.Duration

	// Streams bounds OpenStream's byte streams.
	Streams StreamConfig
	// Files configures SendFile.
	Files FileConfig

	// MeterProvider receives the transport's metrics (names prefixed
	// "internode."). Default: otel.GetMeterProvider(), a no-op until the
	// application sets one.
	MeterProvider metric.MeterProvider
	// TracerProvider receives Request's client spans and handlers' server
	// spans; trace context travels in the message header. Default:
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// DisableSocketMeasurement turns off reading the socket queue depths
	// (one ioctl per write and per frame read).
	DisableSocketMeasurement bool
	// Sockets sets socket options per lane (index: routing.Lane).
	Sockets [routing.NumLanes]SocketConfig

	// TLS, when set, makes every connection mutual TLS bound to node
	// identity (see TLSConfig); plain-text peers are then refused.
	TLS *TLSConfig
	// AcceptUnknownPeers accepts connections from nodes the Membership does
	// not know; by default they are refused (RefusedUnknownNode). Without
	// TLS a node's ID is only claimed, not proven: see the README's
	// security section. A peer that is not a member is answered but not
	// remembered: once it is quiet its entry is forgotten, its counts join
	// Stats' StrangersPeer entry, and its metrics carry that label.
	AcceptUnknownPeers bool
	// MaxPendingHandshakes bounds the accepted connections that have not
	// finished their handshake, in total (default 256) and from one
	// remote host (MaxPendingHandshakesPerHost, default 32); beyond them a
	// new connection is closed at once and counted (RefusedTooMany).
	MaxPendingHandshakes        int
	MaxPendingHandshakesPerHost int
	// MaxConnsPerPeer bounds the established inbound connections one peer
	// may hold of each kind (each lane, stream sessions, and file
	// transfers, which Files.MaxConcurrent also bounds); MaxConns bounds
	// them in total. Beyond either a handshake is refused (RefusedTooMany).
	// A peer needs one of each at a time, and a second while a broken
	// one is noticed. Defaults 4 and 4096.
	MaxConnsPerPeer int
	MaxConns        int

	// OnDropped, if set, is called for every message this node accepted for
	// sending (Send or Request returned nil, or a response) and then
	// failed to write: expired, connection reset, peer left, closed,
	// refused. With the payload it can, for example, store a hint to
	// replay later. It runs on the lane's writer goroutine: it must be
	// quick and must not call Send or Request to the same peer. The
	// DroppedMessage and its Payload are valid only during the call.
	OnDropped func(DroppedMessage)

	// Logger receives connection events and refusals. Default slog.Default().
	Logger *slog.Logger
}

// SocketConfig holds socket options; zero fields leave the system's
// defaults. Seed 004 explains the trade-off of buffer sizes: larger ones
// absorb bursts, but a receive buffer the application does not drain
// costs memory and, when full, makes the kernel collapse and prune queues.
type SocketConfig struct {
	SendBuffer    int           // SO_SNDBUF, bytes
	ReceiveBuffer int           // SO_RCVBUF, bytes
	UserTimeout   time.Duration // TCP_USER_TIMEOUT: how long unacknowledged data may wait before the connection fails
	KeepAlive     time.Duration // TCP keep-alive idle time; negative disables keep-alive
}

// apply sets the options on conn.
func (s SocketConfig) apply(conn *net.TCPConn) error {
	if s.SendBuffer > 0 {
		if err := conn.SetWriteBuffer(s.SendBuffer); err != nil {
			return err
		}
	}
	if s.ReceiveBuffer > 0 {
		if err := conn.SetReadBuffer(s.ReceiveBuffer); err != nil {
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
// peer's other two lanes may not: PerPeer − 2×PerConnection (at least
// PerConnection), so a peer's large messages never take the room of its
// small ones. A connection holding nothing may take one message larger
// than its limit (up to MaxMessageSize), so a large message always gets
// through.
//
// Outbound, the bytes held are the encoded messages queued or being
// written (a large message's payload is the caller's buffer, held until
// written). Inbound, they are the buffers of frames and messages received,
// from the moment they are allocated — capacity is taken first — until
// every handler of their messages has returned, responses included. See
// the package documentation for the one exception (OverloadReject).
type Limits struct {
	PerConnection int64 // bytes; default 4 MiB
	PerPeer       int64 // bytes, all of a peer's connections; default 64 MiB
	Node          int64 // bytes, all peers; default 256 MiB
}

// forLane returns the limit of one connection of lane.
func (l Limits) forLane(lane routing.Lane) int64 {
	if lane == routing.Large {
		return max(l.PerConnection, l.PerPeer-2*l.PerConnection)
	}
	return l.PerConnection
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
// with its header, inbound its payload or a whole frame — or that
// connection would wait for room forever.
func (l Limits) validate(side string, maxMessage int) error {
	if l.PerConnection <= 0 || l.PerPeer <= 0 || l.Node <= 0 {
		return fmt.Errorf("transport: config: %s limits must be positive", side)
	}
	unit := int64(maxMessage + wire.MaxHeaderSize)
	if side == "inbound" {
		unit = int64(max(maxMessage, wire.DefaultMaxFramePayload))
	}
	if unit > min(l.PerPeer, l.Node) {
		return fmt.Errorf("transport: config: %s limits (%d per peer, %d per node) cannot hold %d bytes: a message of MaxMessageSize with its header, or a frame",
			side, l.PerPeer, l.Node, unit)
	}
	return nil
}

// OverloadPolicy says what a receiver out of inbound capacity does.
type OverloadPolicy uint8

const (
	// OverloadPause stops reading the connection until capacity is free.
	OverloadPause OverloadPolicy = iota
	// OverloadReject drops the message and answers ErrOverloaded: a
	// request fails with it; a one-way sender counts it in
	// ConnStats.RemoteDropped.
	OverloadReject
)

// MaxLargeThreshold is the largest Config.LargeThreshold: a small-lane
// message, header included, must fit in one frame.
const MaxLargeThreshold = wire.DefaultMaxFramePayload - wire.MaxHeaderSize

// Defaults used by DefaultConfig.
const (
	DefaultMaxMessageSize              = 32 << 20
	DefaultRequestTimeout              = 10 * time.Second
	DefaultDialTimeout                 = 5 * time.Second
	DefaultHandshakeTimeout            = 5 * time.Second
	DefaultIdleTimeout                 = 60 * time.Second
	DefaultKeepaliveTimeout            = 5 * time.Second
	DefaultWriteTimeout                = 30 * time.Second
	DefaultMaxConnsPerPeer             = 4
	DefaultMaxConns                    = 4096
	DefaultReconnectMinBackoff         = 50 * time.Millisecond
	DefaultReconnectMaxBackoff         = 5 * time.Second
	DefaultMaxPendingHandshakes        = 256
	DefaultMaxPendingHandshakesPerHost = 32
)

// DefaultConfig returns a Config with every tunable field at its default.
func DefaultConfig() Config {
	return Config{
		LargeThreshold:              routing.DefaultThreshold,
		MaxMessageSize:              DefaultMaxMessageSize,
		Outbound:                    DefaultLimits(),
		Inbound:                     DefaultLimits(),
		Streams:                     DefaultStreamConfig(),
		Files:                       DefaultFileConfig(),
		RequestTimeout:              DefaultRequestTimeout,
		DialTimeout:                 DefaultDialTimeout,
		HandshakeTimeout:            DefaultHandshakeTimeout,
		IdleTimeout:                 DefaultIdleTimeout,
		KeepaliveTimeout:            DefaultKeepaliveTimeout,
		WriteTimeout:                DefaultWriteTimeout,
		MaxConnsPerPeer:             DefaultMaxConnsPerPeer,
		MaxConns:                    DefaultMaxConns,
		ReconnectMinBackoff:         DefaultReconnectMinBackoff,
		ReconnectMaxBackoff:         DefaultReconnectMaxBackoff,
		MaxPendingHandshakes:        DefaultMaxPendingHandshakes,
		MaxPendingHandshakesPerHost: DefaultMaxPendingHandshakesPerHost,
	}
}

// withDefaults returns a copy of c with zero fields filled in.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.LargeThreshold, d.LargeThreshold)
	setDefault(&c.MaxMessageSize, d.MaxMessageSize)
	c.Streams.setDefaults()
	c.Files.setDefaults()
	c.Outbound.setDefaults()
	c.Inbound.setDefaults()
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.DialTimeout, d.DialTimeout)
	setDefault(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	setDefault(&c.KeepaliveTimeout, d.KeepaliveTimeout)
	setDefault(&c.WriteTimeout, d.WriteTimeout)
	setDefault(&c.MaxConnsPerPeer, d.MaxConnsPerPeer)
	setDefault(&c.MaxConns, d.MaxConns)
	setDefault(&c.ReconnectMinBackoff, d.ReconnectMinBackoff)
	setDefault(&c.ReconnectMaxBackoff, d.ReconnectMaxBackoff)
	setDefault(&c.MaxPendingHandshakes, d.MaxPendingHandshakes)
	setDefault(&c.MaxPendingHandshakesPerHost, d.MaxPendingHandshakesPerHost)
	if c.Coalescing == nil {
		c.Coalescing = DefaultCoalescing
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.LaneOverrides = maps.Clone(c.LaneOverrides)
	c.VerbTimeouts = maps.Clone(c.VerbTimeouts)
	return c
}

// DefaultCoalescing is the default Config.Coalescing: Disabled on the
// urgent lane, Adaptive elsewhere.
func DefaultCoalescing(lane routing.Lane) coalescing.Strategy {
	if lane == routing.Urgent {
		return coalescing.NewDisabled()
	}
	return coalescing.NewAdaptive(coalescing.DefaultAdaptiveConfig())
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports the first problem with c, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("transport: config: "+format, args...))
		}
	}
	check(c.NodeID != "", "NodeID is required")
	check(len(c.NodeID) <= wire.MaxNameLength, "NodeID longer than %d bytes", wire.MaxNameLength)
	check(c.ClusterName != "", "ClusterName is required")
	check(len(c.ClusterName) <= wire.MaxNameLength, "ClusterName longer than %d bytes", wire.MaxNameLength)
	check(c.ListenAddr != "", "ListenAddr is required")
	check(c.Membership != nil, "Membership is required")
	check(c.LargeThreshold >= 1<<10 && c.LargeThreshold <= MaxLargeThreshold,
		"LargeThreshold %d outside [1 KiB, %d]: a small-lane message must fit in one frame", c.LargeThreshold, MaxLargeThreshold)
	check(c.MaxMessageSize >= 1<<10 && c.MaxMessageSize <= 1<<30, "MaxMessageSize %d outside [1 KiB, 1 GiB]", c.MaxMessageSize)
	errs = append(errs, c.Outbound.validate("outbound", c.MaxMessageSize), c.Inbound.validate("inbound", c.MaxMessageSize))
	check(c.Streams.MaxPerPeer > 0 && c.Streams.StreamBuffer > 0 && c.Streams.SessionBuffer >= c.Streams.StreamBuffer,
		"Streams: MaxPerPeer and StreamBuffer must be positive and SessionBuffer at least StreamBuffer")
	check(smux.VerifyConfig(c.Streams.smux()) == nil, "Streams: %v", smux.VerifyConfig(c.Streams.smux()))
	check(c.Files.RateLimit >= 0 && c.Files.MaxConcurrent > 0, "Files: RateLimit must not be negative, MaxConcurrent must be positive")
	check(c.MaxPendingHandshakes > 0 && c.MaxPendingHandshakesPerHost > 0, "MaxPendingHandshakes and MaxPendingHandshakesPerHost must be positive")
	check(c.MaxConnsPerPeer > 0 && c.MaxConns >= c.MaxConnsPerPeer, "MaxConnsPerPeer must be positive and MaxConns at least MaxConnsPerPeer")
	check(c.KeepaliveTimeout < 0 || c.KeepaliveTimeout >= 2*wire.KeepaliveInterval,
		"KeepaliveTimeout %v below %v: peers speak every %v", c.KeepaliveTimeout, 2*wire.KeepaliveInterval, wire.KeepaliveInterval)
	if c.TLS != nil {
		check(c.TLS.Server != nil && c.TLS.Client != nil, "TLS needs both Server and Client configs")
		check(c.TLS.Server == nil || c.TLS.Server.ClientAuth == tls.RequireAndVerifyClientCert,
			"TLS.Server must require and verify client certificates (tls.RequireAndVerifyClientCert)")
	}
	check(c.InboundOverload <= OverloadReject, "unknown InboundOverload %d", c.InboundOverload)
	check(c.RequestTimeout > 0, "RequestTimeout must be positive")
	check(c.DialTimeout > 0, "DialTimeout must be positive")
	check(c.HandshakeTimeout > 0, "HandshakeTimeout must be positive")
	check(c.ReconnectMinBackoff > 0 && c.ReconnectMinBackoff <= c.ReconnectMaxBackoff,
		"ReconnectMinBackoff %v must be positive and at most ReconnectMaxBackoff %v", c.ReconnectMinBackoff, c.ReconnectMaxBackoff)
	for verb, lane := range c.LaneOverrides {
		check(lane.Valid(), "LaneOverrides[%d]: invalid lane %d", verb, lane)
	}
	for verb, d := range c.VerbTimeouts {
		check(d > 0, "VerbTimeouts[%d] must be positive", verb)
	}
	return errors.Join(errs...)
}

// requestTimeout returns the default timeout for a request of verb.
func (c *Config) requestTimeout(verb Verb) time.Duration {
	if d, ok := c.VerbTimeouts[verb]; ok {
		return d
	}
	return c.RequestTimeout
}
