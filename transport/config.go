package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
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
	// 1 MiB.
	LargeThreshold int
	// LaneOverrides sends a verb's messages on a given lane (typically
	// Urgent for gossip and heartbeats) as long as they fit within
	// LargeThreshold.
	LaneOverrides map[Verb]routing.Lane
	// Coalescing returns a new strategy for one connection of the given
	// lane. Default: coalescing.NewDisabled for every lane.
	Coalescing func(routing.Lane) coalescing.Strategy

	// MaxMessageSize is the largest payload, in bytes, sent or accepted.
	// Default 128 MiB; range 1 KiB to 1 GiB.
	MaxMessageSize int
	// QueueCapacity is the most bytes of encoded messages that may wait in
	// one outbound connection's queue. A message that does not fit fails
	// with ErrOverloaded. Default 4 MiB; at least MaxMessageSize is not
	// required: large messages are admitted while the queue is empty.
	QueueCapacity int

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
	// ReconnectMinBackoff and ReconnectMaxBackoff bound the capped
	// exponential backoff, with jitter, between connection attempts while
	// messages are pending. Defaults 50 ms and 5 s.
	ReconnectMinBackoff time.Duration
	ReconnectMaxBackoff time.Duration

	// Logger receives connection events and refusals. Default slog.Default().
	Logger *slog.Logger
}

// Defaults used by DefaultConfig.
const (
	DefaultMaxMessageSize      = 128 << 20
	DefaultQueueCapacity       = 4 << 20
	DefaultRequestTimeout      = 10 * time.Second
	DefaultDialTimeout         = 5 * time.Second
	DefaultHandshakeTimeout    = 5 * time.Second
	DefaultIdleTimeout         = 60 * time.Second
	DefaultReconnectMinBackoff = 50 * time.Millisecond
	DefaultReconnectMaxBackoff = 5 * time.Second
)

// DefaultConfig returns a Config with every tunable field at its default.
func DefaultConfig() Config {
	return Config{
		LargeThreshold:      routing.DefaultThreshold,
		MaxMessageSize:      DefaultMaxMessageSize,
		QueueCapacity:       DefaultQueueCapacity,
		RequestTimeout:      DefaultRequestTimeout,
		DialTimeout:         DefaultDialTimeout,
		HandshakeTimeout:    DefaultHandshakeTimeout,
		IdleTimeout:         DefaultIdleTimeout,
		ReconnectMinBackoff: DefaultReconnectMinBackoff,
		ReconnectMaxBackoff: DefaultReconnectMaxBackoff,
	}
}

// withDefaults returns a copy of c with zero fields filled in.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.LargeThreshold, d.LargeThreshold)
	setDefault(&c.MaxMessageSize, d.MaxMessageSize)
	setDefault(&c.QueueCapacity, d.QueueCapacity)
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.DialTimeout, d.DialTimeout)
	setDefault(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDefault(&c.IdleTimeout, d.IdleTimeout)
	setDefault(&c.ReconnectMinBackoff, d.ReconnectMinBackoff)
	setDefault(&c.ReconnectMaxBackoff, d.ReconnectMaxBackoff)
	if c.Coalescing == nil {
		c.Coalescing = func(routing.Lane) coalescing.Strategy { return coalescing.NewDisabled() }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.LaneOverrides = maps.Clone(c.LaneOverrides)
	c.VerbTimeouts = maps.Clone(c.VerbTimeouts)
	return c
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
	check(c.LargeThreshold >= 1<<10 && c.LargeThreshold <= 1<<20, "LargeThreshold %d outside [1 KiB, 1 MiB]", c.LargeThreshold)
	check(c.MaxMessageSize >= 1<<10 && c.MaxMessageSize <= 1<<30, "MaxMessageSize %d outside [1 KiB, 1 GiB]", c.MaxMessageSize)
	check(c.QueueCapacity >= c.LargeThreshold, "QueueCapacity %d below LargeThreshold %d", c.QueueCapacity, c.LargeThreshold)
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
