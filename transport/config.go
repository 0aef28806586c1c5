package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"time"

	"github.com/xtaci/smux"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Config configures a Transport. Start from DefaultConfig and set at least
// NodeID, ClusterName, ListenAddr and Membership. New fills zero fields with
// defaults in its own copy; the caller's struct is never modified. The
// settings come in groups, each with its own defaults and checks.
type Config struct {
	// NodeID names this node; it is sent in every handshake. Required, at
	// most 255 bytes.
	NodeID cluster.NodeID
	// ClusterName must match on both ends of a connection. Required, at
	// most 255 bytes.
	ClusterName string
	// ListenAddr is the TCP address to listen on, "host:port"; port 0 picks
	// one (see Transport.Addr). Listen binds it. Required.
	ListenAddr string
	// Membership resolves peers' addresses and says when they leave.
	// Required.
	Membership cluster.Membership

	// Dialer opens every outbound connection, to a member's Addr with
	// network "tcp", within Timeouts.Dial. Default &net.Dialer{}. Set it to
	// dial through a proxy or a VPN interface, to set socket options in
	// net.Dialer.Control, or to test over an in-memory network
	// (transporttest.Network). TLS, when configured, wraps what it returns.
	Dialer Dialer
	// Listen binds ListenAddr, with network "tcp", once, in New; the
	// transport owns the listener it returns and closes it in Close.
	// Default net.Listen. It is a function rather than a net.Listener so
	// that one Config can start a transport again (a restart binds anew)
	// and ListenAddr stays the one place that names the address;
	// Transport.Addr reports the bound listener's address. Use it for
	// SO_REUSEPORT (a net.ListenConfig with Control), an inherited socket,
	// or an in-memory network (transporttest.Network). TLS, when
	// configured, wraps what it accepts.
	//
	// A connection that is not a *net.TCPConn, from Dialer or Listen,
	// works as well, without what needs a TCP socket: TCP_NODELAY,
	// Lanes.Sockets, and the copy-free sendfile and splice of SendFile
	// (a buffered copy instead) are skipped; the socket queue depths are
	// measured only on a syscall.Conn (ConnStats.QueuesMeasured says
	// whether they were).
	Listen func(network, address string) (net.Listener, error)

	Lanes     LaneConfig      // how messages are routed and batched
	Memory    MemoryConfig    // how much may be held, and what happens when it is full
	Timeouts  TimeoutConfig   // how long each wait may last
	Reconnect ReconnectConfig // how a lost connection is redialled
	Security  SecurityConfig  // who may connect, and how
	Streams   StreamConfig    // OpenStream's byte streams
	Files     FileConfig      // SendFile's transfers
	Telemetry TelemetryConfig // metrics, traces, logs

	// OnDropped, if set, is called for every message this node accepted for
	// sending (a one-way message Send returned nil for, a request Request
	// queued, or a response) and then failed to write: expired,
	// connection reset, peer left, closed, refused, or overloaded (a
	// response with no room even for its failure). With the payload it
	// can, for example, store a hint to replay later; a request's caller
	// gets the failure from Request as well (DroppedMessage.Request). The
	// transport's own cancels of requests whose callers
	// gave up are counted, and not given to it. It runs on the lane's
	// writer goroutine (or a Send caller's that wrote itself; for a
	// response refused before it was queued, the goroutine that answered:
	// its handler's or its connection's reader; for a small or urgent
	// request withdrawn from its queue because its caller gave up, the
	// caller's, before Request returns; for the messages of a peer that
	// left, where the Membership is a cluster.LookupFromWatch that lets
	// its watchers look up, the goroutine telling of the Leave, before
	// the peer can be told as joined again): it must be quick, must not
	// call Send or Request to the same peer, must not change the
	// Membership, and must not call Close or Shutdown, which wait for the
	// goroutine it runs on. The DroppedMessage and its Payload are valid
	// only during the call.
	OnDropped func(DroppedMessage)
}

// Dialer opens a connection (Config.Dialer); *net.Dialer satisfies it.
// DialContext is called from many goroutines at once and must return once
// ctx ends.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

var _ Dialer = (*net.Dialer)(nil)

// LaneConfig says how messages are routed to lanes and batched on them.
type LaneConfig struct {
	// LargeThreshold is the largest encoded message, in bytes, sent on the
	// Small lane; larger ones go to Large. Default 64 KiB; range 1 KiB to
	// MaxLargeThreshold (a small-lane message must fit in one frame).
	LargeThreshold int
	// Overrides sends a verb's messages on a given lane (typically Urgent
	// for gossip and heartbeats) as long as they fit within
	// LargeThreshold.
	Overrides map[Verb]routing.Lane
	// Coalescing returns a new strategy for one connection of the given
	// lane. Default DefaultCoalescing: Disabled for the urgent lane
	// (control traffic never waits) and Adaptive for the others. A nil
	// strategy for a lane means that lane's default.
	Coalescing func(routing.Lane) coalescing.Strategy
	// Sockets sets socket options per lane (index: routing.Lane).
	Sockets [routing.NumLanes]SocketConfig
	// Compression says per lane (index: routing.Lane) whether batch
	// frames are compressed: CompressionAuto (the zero value and
	// default: on unless the peer is on a loopback address, and off for
	// a while after frames that do not shrink), CompressionOff or
	// CompressionOn. It applies to whole messages — on the large lane,
	// only to responses that fit in a frame.
	//
	// TLS hides a frame's bytes, not its length, and a compressed frame's
	// length depends on its content: where one batch can mix bytes an
	// observer of the network chooses (a client's key, say) with secrets,
	// that observer can guess the secrets from the lengths, as in the
	// CRIME and BREACH attacks. Turn compression off on such lanes.
	Compression [routing.NumLanes]Compression
}

// MemoryConfig bounds what the transport holds and says what happens when
// it is full (see Limits and the package documentation).
type MemoryConfig struct {
	// MaxMessageSize is the largest payload, in bytes, sent or accepted
	// (a receiver refuses a larger one with ErrTooLarge). Bulk data is
	// better sent as a stream, with a ReaderHandler, or with SendFile.
	// Default 32 MiB; range 1 KiB to 1 GiB; the limits' PerPeer and Node
	// must hold one such message.
	MaxMessageSize int
	// Outbound bounds the bytes of messages queued or being written, per
	// connection, per peer and node-wide. Default 4 MiB, 64 MiB, 256 MiB.
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
	// refuses the message and tells the sender it was overloaded.
	InboundOverload OverloadPolicy
}

// TimeoutConfig bounds the transport's waits.
type TimeoutConfig struct {
	// Request bounds a Request whose context has no deadline. Default 10 s.
	Request time.Duration
	// PerVerb overrides Request per verb.
	PerVerb map[Verb]time.Duration
	// Dial bounds one TCP connect. Default 5 s.
	Dial time.Duration
	// Handshake bounds a handshake, on either side: under TLS, the TLS
	// handshake and the internode Hello and Reply after it together.
	// Default 5 s.
	Handshake time.Duration
	// Idle closes an outbound connection that wrote no message for this
	// long (its pings do not count) once no request written on it awaits
	// its response, and a stream session (OpenStream) on which no stream
	// was open for this long. Default 60 s; negative means never.
	Idle time.Duration
	// Keepalive is how long either end of a connection tolerates hearing
	// nothing from the other before it judges the connection dead and
	// closes it. Both ends speak at least every wire.KeepaliveInterval
	// (1 s): the sender pings when it has nothing to write, the receiver
	// beats whether or not it is reading. A dead connection's requests
	// fail at once (ErrConnectionReset) and the lane redials: at once if
	// the connection had proved itself (its peer was heard on it, and it
	// lived at least wire.KeepaliveInterval), else
	// after its backoff, so that a peer that takes the handshake and
	// hangs up is not redialled in a loop. It also bounds how long one frame may take to arrive, so a
	// peer that trickles bytes is cut off; a link must therefore carry
	// one frame of wire.DefaultMaxFramePayload (256 KiB, a large
	// message's part) within Keepalive: about 420 kbit/s at the default,
	// below which every large message is cut off and dropped
	// (ReasonConnectionReset). Raise Keepalive for slower links. A stream session (OpenStream)
	// silent for Keepalive (2 s at least) is closed too, within twice
	// that, and its streams end cut short. Default 5 s; at least 2 s;
	// negative turns the checks off (pings and beats are still sent).
	Keepalive time.Duration
	// Write bounds one write to a peer: a peer that stops reading (a
	// receiver whose handlers are stuck, or a hostile one) is disconnected
	// after this long, and the write's messages fail with
	// ReasonConnectionReset. It bounds, likewise, each chunk of a
	// Stream's Write (see Stream.Write) and of SendFile. It is also the
	// default TCP_USER_TIMEOUT (SocketConfig.UserTimeout) of the lanes'
	// outbound sockets and of both ends of a stream's connection of its
	// own (OwnConnection), at most about 24.8 days (the most the kernel
	// takes); a stream session's liveness is its keep-alive's, a file
	// transfer's its own deadlines'. Default 30 s; negative means
	// never.
	Write time.Duration
}

// ReconnectConfig bounds the capped exponential backoff, with jitter,
// between connection attempts while messages are pending. A peer seen
// again, or a connection judged dead after it proved itself (its peer
// was heard on it, and it lived at least wire.KeepaliveInterval), is
// redialled at once; one that died before that waits its backoff.
type ReconnectConfig struct {
	MinBackoff time.Duration // default 50 ms
	MaxBackoff time.Duration // default 5 s
}

// SecurityConfig says who may connect to this node, and how.
type SecurityConfig struct {
	// TLS, when set, makes every connection mutual TLS bound to node
	// identity (see TLSConfig and MutualTLS); plain-text peers are then
	// refused. Without it a node's ID is only claimed: run plain text only
	// on a network you trust (see the README's security section).
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
	// remote host (MaxPendingHandshakesPerHost, default 32), a host being
	// an IPv4 address or an IPv6 /64 (or, for a Listen whose connections
	// report another kind of address, its part before the port); beyond
	// them a new connection is closed at once and counted
	// (RefusedTooMany). With MaxPendingHandshakes reached, a connection
	// from a host holding at least two fewer than the host holding the
	// most takes the place of that host's oldest, which is closed and
	// counted the same way: a few hosts that never finish their
	// handshakes cannot keep every other peer out.
	MaxPendingHandshakes        int
	MaxPendingHandshakesPerHost int
	// MaxConnsPerPeer bounds the established inbound connections one peer
	// may hold of each kind (each lane, stream sessions, and file
	// transfers, which Files.MaxConcurrent also bounds); MaxConns bounds
	// them in total. Beyond either a handshake is refused (RefusedTooMany).
	// A peer needs one of each at a time, and a second while a broken
	// one is noticed. MaxConns also bounds the entries kept for peers
	// that are not members (AcceptUnknownPeers), which outlive their
	// connections until they are found quiet: beyond it the handshake of
	// a node that is not a member and has none is refused too, and the
	// quiet ones are forgotten at once. Defaults 4 and 4096.
	MaxConnsPerPeer int
	MaxConns        int
}

// TelemetryConfig says where the transport's metrics, traces and logs go.
type TelemetryConfig struct {
	// MeterProvider receives the transport's metrics (names prefixed
	// "internode."), on a meter whose instrumentation scope carries the
	// node's ID (attribute internode.node; Prometheus label
	// otel_scope_internode_node), so that transports sharing a provider
	// keep their series apart. Default: otel.GetMeterProvider(), a no-op
	// until the application sets one. Transports that share a provider
	// share one registration of the host-wide internode.kernel.* counters
	// (on a scope without the attribute), which lasts until the last of
	// them closes. A closed transport's own metrics, but for the stage and
	// health gauges, are reported once more, with their final figures, by
	// the first collection after Close (with several readers, the first
	// reader to collect; the others may miss them). A transport of the
	// same node started on the same provider (a pointer, as the SDK's
	// is) before that collection takes the series over: the closed one's
	// final figures are not
	// reported, and the series restart from the new transport's (a
	// counter reset). A provider whose views drop
	// internode.request.duration and that has not collected yet is taken
	// as one that collects nothing, whose counters Close unregisters at
	// once.
	MeterProvider metric.MeterProvider
	// TracerProvider receives Request's client spans and the server spans
	// of message handlers (Handler, ReaderHandler); trace context travels
	// in the message header. Streams and file transfers carry none, and
	// their handlers get no span. Default:
	// otel.GetTracerProvider(). While it has nothing behind it (no SDK:
	// the global provider before otel.SetTracerProvider, or a no-op one),
	// its spans record nothing, and requests whose context carries no
	// trace skip theirs, trying again once a second; a trace in the
	// context is always passed on.
	TracerProvider trace.TracerProvider
	// DisableSocketMeasurement turns off reading the socket queue depths
	// (an ioctl after a sampled write or frame read: every one while a
	// queue builds up or a write is slow, otherwise one in 16 or per 16 KiB;
	// see internal/sockstat.Sampler). A message written by its own
	// goroutine to a quiet lane (ConnStats.CallerWrites) still reads the
	// socket's send queue first, measuring or not, whenever a bound kept
	// from the last reading and the bytes written since does not settle it.
	DisableSocketMeasurement bool
	// Logger receives connection events and refusals (those rate
	// limited). Default slog.Default().
	Logger *slog.Logger
}

// StreamConfig bounds the byte streams of OpenStream and HandleStream.
type StreamConfig struct {
	// MaxPerPeer is how many streams may be open at once with one peer in
	// each direction; OpenStream beyond it fails with ErrOverloaded, and
	// the peer's beyond it are refused. Those in the peer's session (not
	// OwnConnection) are bounded further, to SessionBuffer / StreamBuffer
	// each way, less one (the opener counts a window of at least 256 KiB,
	// smux's first): a stream whose reader stops holds its window of the
	// session's buffer, and a full buffer stops the session, so the
	// streams' windows together must fit in it. Default 256; in a
	// session with the default buffers, 15. A node that needs more at
	// once raises SessionBuffer, lowers StreamBuffer, or opens its
	// busiest streams with OwnConnection.
	MaxPerPeer int
	// SessionBuffer is the bytes one peer's stream session may hold
	// received and unread, over all its streams (smux MaxReceiveBuffer).
	// It must be larger than StreamBuffer and than 256 KiB, smux's first
	// window, or one stream that stops reading stops its session
	// (Validate refuses it). An accepted session takes it from the peer's
	// and the node's inbound reserves for as long as it lives (a
	// connection of its own, 32 KiB), which is until its opener finds no
	// stream open on it for Timeouts.Idle, and is refused (ErrOverloaded
	// at OpenStream) when the stream connections would then hold so much
	// that a message of MaxMessageSize could no longer find its room
	// beside them. Default 4 MiB.
	SessionBuffer int
	// StreamBuffer is the per-stream flow-control window in bytes (smux
	// v2 MaxStreamBuffer): a writer waits once this much is unread. Each
	// stream is also read ahead of Read, to see the peer's close and to
	// keep read deadlines from smux (Stream.Write), into a buffer of
	// 32 KiB that grows while full up to this size; a peer's streams grow
	// theirs by SessionBuffer at most together. Default 256 KiB.
	StreamBuffer int

	// stallable lifts the bound sessionStreams puts on a session's
	// streams, for tests that congest a session with stalled streams
	// (export_test.go).
	stallable bool
}

// DefaultStreamConfig returns the default stream limits.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{MaxPerPeer: 256, SessionBuffer: 4 << 20, StreamBuffer: 256 << 10}
}

func (c *StreamConfig) setDefaults() {
	d := DefaultStreamConfig()
	setDefault(&c.MaxPerPeer, d.MaxPerPeer)
	setDefault(&c.SessionBuffer, d.SessionBuffer)
	setDefault(&c.StreamBuffer, d.StreamBuffer)
}

// smux returns the configuration of a stream session: its buffers, and a
// keep-alive that finds a silent peer as a lane's connection does, once
// it is silent for keepalive (Timeouts.Keepalive). Each side sends smux's
// NOP every wire.KeepaliveInterval; smux closes a session when its check,
// every KeepAliveTimeout, finds nothing heard since the check before, so
// after one to two KeepAliveTimeouts of silence. keepalive, and two
// intervals at least (a peer speaks only once an interval), tolerates the
// silence a lane does and closes it within twice that: a long transfer is
// not cut for a pause a lane would ride out. With the checks off
// (negative keepalive) the NOPs are still sent, and no silence closes it.
func (c StreamConfig) smux(keepalive time.Duration) *smux.Config {
	sc := smux.DefaultConfig()
	sc.Version = 2
	sc.MaxReceiveBuffer = c.SessionBuffer
	sc.MaxStreamBuffer = c.StreamBuffer
	sc.KeepAliveInterval = wire.KeepaliveInterval
	sc.KeepAliveTimeout = max(keepalive, 2*wire.KeepaliveInterval)
	if keepalive < 0 {
		sc.KeepAliveTimeout = math.MaxInt64
	}
	return sc
}

// smuxInitialWindow is the window smux (v1.5.58) gives a stream's writer
// until the reader's first window update announces the reader's own
// (initialPeerWindow).
const smuxInitialWindow = 256 << 10

// sessionStreams is how many streams the peer's session may carry at once
// this way: opener, the streams this node opens (the handlers' bytes come
// back in this node's buffer), or else those it accepts. A stream's writer
// holds at most its window of the reader's session buffer (smux v2's
// per-stream flow control, MaxStreamBuffer), what the read-ahead took
// acknowledged or not; but once that buffer is full, smux's receive loop
// stops reading the session's socket, for every stream. So the streams'
// windows together must fit in the buffer, or enough stalled streams, each
// holding its window, stall the healthy ones too; and strictly within
// it: with the buffer exactly full smux reads no window update either, and
// a handler whose Write waits for one (and so reads nothing) waits for
// good. An accepting side's window is known from the first byte the
// opener writes (the verb, read before the answer), an opener's only once
// it read the answer, while the handler may already be writing in smux's
// first window: the opener counts that.
func (c StreamConfig) sessionStreams(opener bool) int {
	window := c.StreamBuffer
	if opener {
		window = max(window, smuxInitialWindow)
	}
	if c.stallable {
		return c.MaxPerPeer
	}
	return min(c.MaxPerPeer, (c.SessionBuffer-1)/window) // at least 1: validate
}

// FileConfig configures SendFile.
type FileConfig struct {
	// RateLimit caps the bytes per second all of this node's SendFile
	// transfers send together, like Cassandra's stream throughput limit;
	// under it each of the n transfers sending at once sends 1/n of a
	// quarter of Timeouts.Keepalive's worth (of a second's, if less; at
	// least 4 KiB where that is half a Keepalive's worth or less, at most
	// Chunk) at a time, so that its receiver hears from it well within its
	// Keepalive. Default 0: unlimited.
	RateLimit int64
	// MaxConcurrent is how many transfers this node receives at once;
	// beyond it a transfer is refused with ErrOverloaded. Default 16.
	MaxConcurrent int
	// Chunk is the most bytes handed to the kernel in one sendfile call,
	// and spliced from it in one call on the receiver; the rate limit
	// acts between chunks, and a checked transfer's checksum follows a
	// chunk behind. An Unchecked transfer under no rate limit is not
	// chunked on plain TCP: each side moves the whole range in one call,
	// repeated only when the call's deadline finds a slow peer (over TLS
	// the sender writes Chunk at a time). Default 4 MiB.
	Chunk int
}

// DefaultFileConfig returns the default file-transfer settings.
func DefaultFileConfig() FileConfig { return FileConfig{MaxConcurrent: 16, Chunk: 4 << 20} }

func (c *FileConfig) setDefaults() {
	d := DefaultFileConfig()
	setDefault(&c.MaxConcurrent, d.MaxConcurrent)
	setDefault(&c.Chunk, d.Chunk)
}

// MaxLargeThreshold is the largest LaneConfig.LargeThreshold: a small-lane
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
	DefaultReconnectMinBackoff         = 50 * time.Millisecond
	DefaultReconnectMaxBackoff         = 5 * time.Second
	DefaultMaxPendingHandshakes        = 256
	DefaultMaxPendingHandshakesPerHost = 32
	DefaultMaxConnsPerPeer             = 4
	DefaultMaxConns                    = 4096
)

// DefaultConfig returns a Config with every tunable field at its default.
func DefaultConfig() Config {
	lanes := LaneConfig{LargeThreshold: routing.DefaultThreshold, Coalescing: DefaultCoalescing}
	lanes.Sockets[routing.Urgent].NotSentLowat = DefaultNotSentLowat
	lanes.Sockets[routing.Small].NotSentLowat = DefaultNotSentLowat
	return Config{
		Lanes: lanes,
		Memory: MemoryConfig{MaxMessageSize: DefaultMaxMessageSize,
			Outbound: DefaultLimits(), Inbound: DefaultLimits()},
		Timeouts: TimeoutConfig{Request: DefaultRequestTimeout, Dial: DefaultDialTimeout,
			Handshake: DefaultHandshakeTimeout, Idle: DefaultIdleTimeout,
			Keepalive: DefaultKeepaliveTimeout, Write: DefaultWriteTimeout},
		Reconnect: ReconnectConfig{MinBackoff: DefaultReconnectMinBackoff, MaxBackoff: DefaultReconnectMaxBackoff},
		Security: SecurityConfig{MaxPendingHandshakes: DefaultMaxPendingHandshakes,
			MaxPendingHandshakesPerHost: DefaultMaxPendingHandshakesPerHost,
			MaxConnsPerPeer:             DefaultMaxConnsPerPeer, MaxConns: DefaultMaxConns},
		Streams: DefaultStreamConfig(),
		Files:   DefaultFileConfig(),
	}
}

// withDefaults returns a copy of c with zero fields filled in.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Lanes.setDefaults(d.Lanes)
	c.Memory.setDefaults(d.Memory)
	c.Timeouts.setDefaults(d.Timeouts)
	setDefault(&c.Reconnect.MinBackoff, d.Reconnect.MinBackoff)
	setDefault(&c.Reconnect.MaxBackoff, d.Reconnect.MaxBackoff)
	c.Security.setDefaults(d.Security)
	c.Streams.setDefaults()
	c.Files.setDefaults()
	c.Telemetry.setDefaults()
	if c.Dialer == nil {
		c.Dialer = &net.Dialer{}
	}
	if c.Listen == nil {
		c.Listen = net.Listen
	}
	return c
}

func (l *LaneConfig) setDefaults(d LaneConfig) {
	setDefault(&l.LargeThreshold, d.LargeThreshold)
	for _, lane := range []routing.Lane{routing.Urgent, routing.Small} {
		setDefault(&l.Sockets[lane].NotSentLowat, DefaultNotSentLowat)
	}
	if l.Coalescing == nil {
		l.Coalescing = d.Coalescing
	}
	l.Overrides = maps.Clone(l.Overrides)
}

func (m *MemoryConfig) setDefaults(d MemoryConfig) {
	setDefault(&m.MaxMessageSize, d.MaxMessageSize)
	m.Outbound.setDefaults()
	m.Inbound.setDefaults()
}

func (t *TimeoutConfig) setDefaults(d TimeoutConfig) {
	setDefault(&t.Request, d.Request)
	setDefault(&t.Dial, d.Dial)
	setDefault(&t.Handshake, d.Handshake)
	setDefault(&t.Idle, d.Idle)
	setDefault(&t.Keepalive, d.Keepalive)
	setDefault(&t.Write, d.Write)
	t.PerVerb = maps.Clone(t.PerVerb)
}

func (s *SecurityConfig) setDefaults(d SecurityConfig) {
	setDefault(&s.MaxPendingHandshakes, d.MaxPendingHandshakes)
	setDefault(&s.MaxPendingHandshakesPerHost, d.MaxPendingHandshakesPerHost)
	setDefault(&s.MaxConnsPerPeer, d.MaxConnsPerPeer)
	setDefault(&s.MaxConns, d.MaxConns)
}

func (t *TelemetryConfig) setDefaults() {
	if t.MeterProvider == nil {
		t.MeterProvider = otel.GetMeterProvider()
	}
	if t.TracerProvider == nil {
		t.TracerProvider = otel.GetTracerProvider()
	}
	if t.Logger == nil {
		t.Logger = slog.Default()
	}
}

// DefaultCoalescing is the default LaneConfig.Coalescing: Disabled on the
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

// checker gathers the problems a validation finds.
type checker struct{ errs []error }

func (c *checker) check(ok bool, format string, args ...any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf("transport: config: "+format, args...))
	}
}

// Validate reports every problem with c, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var k checker
	k.check(c.NodeID != "", "NodeID is required")
	k.check(len(c.NodeID) <= wire.MaxNameLength, "NodeID longer than %d bytes", wire.MaxNameLength)
	k.check(c.ClusterName != "", "ClusterName is required")
	k.check(len(c.ClusterName) <= wire.MaxNameLength, "ClusterName longer than %d bytes", wire.MaxNameLength)
	k.check(c.ListenAddr != "", "ListenAddr is required")
	k.check(c.Membership != nil, "Membership is required")
	c.Lanes.validate(&k)
	c.Memory.validate(&k)
	c.Timeouts.validate(&k)
	k.check(c.Reconnect.MinBackoff > 0 && c.Reconnect.MinBackoff <= c.Reconnect.MaxBackoff,
		"Reconnect.MinBackoff %v must be positive and at most MaxBackoff %v", c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff)
	c.Security.validate(&k, c.ClusterName)
	c.Streams.validate(&k)
	c.Files.validate(&k)
	return errors.Join(k.errs...)
}

func (l LaneConfig) validate(k *checker) {
	k.check(l.LargeThreshold >= 1<<10 && l.LargeThreshold <= MaxLargeThreshold,
		"Lanes.LargeThreshold %d outside [1 KiB, %d]: a small-lane message must fit in one frame", l.LargeThreshold, MaxLargeThreshold)
	for verb, lane := range l.Overrides {
		k.check(lane.Valid(), "Lanes.Overrides[%d]: invalid lane %d", verb, lane)
	}
	for lane, c := range l.Compression {
		k.check(c <= CompressionOn, "Lanes.Compression[%d]: unknown mode %d", lane, c)
	}
	for lane, s := range l.Sockets {
		k.check(s.UserTimeout <= maxUserTimeout, "Lanes.Sockets[%d].UserTimeout %v above %v, the most TCP_USER_TIMEOUT holds", lane, s.UserTimeout, maxUserTimeout)
		k.check(s.KeepAlive <= maxKeepAlive, "Lanes.Sockets[%d].KeepAlive %v above %v, the most TCP_KEEPIDLE holds", lane, s.KeepAlive, maxKeepAlive)
	}
}

func (m MemoryConfig) validate(k *checker) {
	k.check(m.MaxMessageSize >= 1<<10 && m.MaxMessageSize <= 1<<30, "Memory.MaxMessageSize %d outside [1 KiB, 1 GiB]", m.MaxMessageSize)
	if err := m.Outbound.validate("outbound", m.MaxMessageSize); err != nil {
		k.errs = append(k.errs, err)
	}
	if err := m.Inbound.validate("inbound", m.MaxMessageSize); err != nil {
		k.errs = append(k.errs, err)
	}
	k.check(m.InboundOverload <= OverloadReject, "unknown Memory.InboundOverload %d", m.InboundOverload)
}

func (t TimeoutConfig) validate(k *checker) {
	k.check(t.Request > 0, "Timeouts.Request must be positive")
	k.check(t.Dial > 0, "Timeouts.Dial must be positive")
	k.check(t.Handshake > 0, "Timeouts.Handshake must be positive")
	k.check(t.Keepalive < 0 || t.Keepalive >= 2*wire.KeepaliveInterval,
		"Timeouts.Keepalive %v below %v: peers speak every %v", t.Keepalive, 2*wire.KeepaliveInterval, wire.KeepaliveInterval)
	for verb, d := range t.PerVerb {
		k.check(d > 0, "Timeouts.PerVerb[%d] must be positive", verb)
	}
}

func (s SecurityConfig) validate(k *checker, clusterName string) {
	k.check(s.MaxPendingHandshakes > 0 && s.MaxPendingHandshakesPerHost > 0,
		"Security.MaxPendingHandshakes and MaxPendingHandshakesPerHost must be positive")
	k.check(s.MaxConnsPerPeer > 0 && s.MaxConns >= s.MaxConnsPerPeer,
		"Security.MaxConnsPerPeer must be positive and MaxConns at least MaxConnsPerPeer")
	if s.TLS != nil {
		s.TLS.validate(k, clusterName)
	}
}

func (c StreamConfig) validate(k *checker) {
	k.check(c.MaxPerPeer > 0 && c.StreamBuffer > 0,
		"Streams: MaxPerPeer and StreamBuffer must be positive")
	// A stream's window must fit in its session's buffer with room to
	// spare: one stream that stops reading fills a buffer no larger, and
	// smux then reads nothing more from the session, not even the window
	// update that stream's own handler may be waiting for (sessionStreams).
	// An opener's window is smux's first until the answer says otherwise.
	k.check(c.SessionBuffer > max(c.StreamBuffer, smuxInitialWindow),
		"Streams: SessionBuffer (%d) must be larger than StreamBuffer (%d) and than smux's first window (%d), or one stalled stream stops its session",
		c.SessionBuffer, c.StreamBuffer, smuxInitialWindow)
	if err := smux.VerifyConfig(c.smux(DefaultKeepaliveTimeout)); err != nil {
		k.check(false, "Streams: %v", err)
	}
}

func (c FileConfig) validate(k *checker) {
	k.check(c.RateLimit >= 0 && c.MaxConcurrent > 0 && c.Chunk > 0, "Files: RateLimit must not be negative, MaxConcurrent and Chunk must be positive")
}

// requestTimeout returns the default timeout for a request of verb.
func (c *Config) requestTimeout(verb Verb) time.Duration {
	if d, ok := c.Timeouts.PerVerb[verb]; ok {
		return d
	}
	return c.Timeouts.Request
}
