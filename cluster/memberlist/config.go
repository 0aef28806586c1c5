package memberlist

import (
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

// DefaultBindAddr is where memberlist gossips when Config.BindAddr is empty:
// all interfaces, memberlist's usual port 7946 (TCP and UDP).
const DefaultBindAddr = "0.0.0.0:7946"

const (
	// DefaultReconnectInterval is how often a node tries to rejoin failed
	// members when Config.ReconnectInterval is zero.
	DefaultReconnectInterval = 5 * time.Second

	// DefaultReconnectTimeout is how long a failed member is remembered for
	// reconnection when Config.ReconnectTimeout is zero; as in hashicorp/serf.
	DefaultReconnectTimeout = 24 * time.Hour

	// minReconnectInterval is the shortest positive ReconnectInterval: a
	// shorter one is almost certainly a unit mistake (ReconnectInterval: 5
	// is 5 ns) and would dial in a tight loop.
	minReconnectInterval = 10 * time.Millisecond
)

var (
	// ErrInvalidConfig is returned by Config.Validate and Join for a
	// configuration that cannot work; the message names the field.
	ErrInvalidConfig = errors.New("memberlist: invalid config")

	// ErrInvalidAddr is returned by SetTransportAddr, and wrapped in
	// ErrInvalidConfig by Validate, for an address that is not "host:port"
	// with a usable port.
	ErrInvalidAddr = errors.New("memberlist: invalid address")

	// ErrLeft is returned by SetTransportAddr after Leave: a node that left
	// no longer gossips its own state.
	ErrLeft = errors.New("memberlist: node has left the cluster")

	// ErrBroadcastTimeout is returned by Leave and SetTransportAddr when
	// the change was not gossiped to any other member within the timeout.
	// The change still applies locally and may still spread. It implements
	// net.Error; Timeout reports true.
	ErrBroadcastTimeout error = broadcastTimeoutError{}
)

type broadcastTimeoutError struct{}

func (broadcastTimeoutError) Error() string   { return "memberlist: broadcast timed out" }
func (broadcastTimeoutError) Timeout() bool   { return true }
func (broadcastTimeoutError) Temporary() bool { return true }

var _ net.Error = broadcastTimeoutError{}

// Config configures Join. NodeID and TransportAddr are required; every
// other field has a default. Join works on a copy; the caller's Config is
// never modified. A Config is a plain value: do not change it while Join
// reads it.
type Config struct {
	// NodeID names this node in the cluster; it becomes memberlist's node
	// name and must be unique. Required, at most wire.MaxNameLength (255)
	// bytes, as in the transport's handshake; a member gossiping a longer
	// name is ignored and logged.
	NodeID cluster.NodeID

	// TransportAddr is the internode listen address, "host:port", that
	// other members dial. It travels in this node's gossip metadata.
	// Required; at most MaxTransportAddrLen bytes; port 1-65535; not an
	// unspecified IP such as 0.0.0.0, which others cannot dial.
	TransportAddr string

	// BindAddr is the "ip:port" memberlist listens on for gossip, over both
	// UDP and TCP. The IP must be a literal; an empty IP (":7946") means all
	// interfaces, IPv4 and IPv6, and advertises a private IP. "[::]" would
	// advertise "::", which no other node can dial: Join refuses it unless
	// Tune sets AdvertiseAddr. Port 0 picks a free port: read it from
	// GossipAddr.
	// Default DefaultBindAddr.
	BindAddr string

	// Seeds are gossip addresses ("host:port") of members to join through,
	// usually other nodes' GossipAddr. Empty starts a new cluster, and so
	// do seeds that are all this node. Join fails unless at least one seed
	// other than this node answers. Default none.
	Seeds []string

	// ReconnectInterval is how often this node tries to rejoin members that
	// failed, that is, were declared dead rather than left gracefully (see
	// Membership.Leave). Memberlist itself only probes and gossips with
	// members it believes alive, so without these attempts two groups that
	// declared each other dead, after a network partition longer than
	// failure detection, would never merge again. Each round tries one
	// remembered member, chosen at random, and first the Seeds if this
	// node's view holds no other live node; see Membership for details.
	// Zero means DefaultReconnectInterval (5 s). A negative value disables
	// reconnection: nothing is remembered and no goroutine runs. A positive
	// value must be at least 10 ms.
	ReconnectInterval time.Duration

	// ReconnectTimeout is how long a failed member is remembered for
	// reconnection attempts, counted from when it was declared failed; it is
	// forgotten earlier if it rejoins. Zero means DefaultReconnectTimeout
	// (24 h). It must not be negative and, unless reconnection is disabled,
	// not shorter than the (effective) ReconnectInterval, or members would
	// be forgotten before the first attempt.
	ReconnectTimeout time.Duration

	// Tune, if set, adjusts memberlist's configuration: it is called after
	// ml.DefaultLANConfig() and BindAddr have been applied, so it may change
	// timings (ProbeInterval, SuspicionMult, ...), encryption keys, labels
	// or the advertised address. Join then sets Name, Delegate, Events,
	// Conflict, Logger and LogOutput itself; changes Tune makes to those
	// are overwritten, but a Conflict delegate Tune sets is still called,
	// after this package's. Default nil.
	Tune func(*ml.Config)

	// Logger receives memberlist's log lines and this package's warnings
	// (for example about members with malformed metadata). Default: they
	// are discarded.
	Logger *log.Logger
}

// DefaultConfig returns a Config with every optional field set to its
// default. Set NodeID and TransportAddr before calling Join.
func DefaultConfig() Config {
	return Config{
		BindAddr:          DefaultBindAddr,
		ReconnectInterval: DefaultReconnectInterval,
		ReconnectTimeout:  DefaultReconnectTimeout,
	}
}

// Validate reports whether Join could use c, as far as it can tell without
// Tune: Join also refuses a Tune that makes memberlist advertise an
// unspecified IP. Empty optional fields are valid and mean their default.
// Errors wrap ErrInvalidConfig.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("%w: NodeID is required", ErrInvalidConfig)
	}
	if len(c.NodeID) > wire.MaxNameLength {
		return fmt.Errorf("%w: NodeID is %d bytes; a handshake carries at most %d",
			ErrInvalidConfig, len(c.NodeID), wire.MaxNameLength)
	}
	if err := checkTransportAddr(c.TransportAddr); err != nil {
		return fmt.Errorf("%w: TransportAddr: %w", ErrInvalidConfig, err)
	}
	if c.BindAddr != "" {
		ip, _, err := splitBindAddr(c.BindAddr)
		if err != nil {
			return fmt.Errorf("%w: BindAddr: %w", ErrInvalidConfig, err)
		}
		// Without Tune there is no AdvertiseAddr: memberlist would
		// advertise this IP (Join checks what it advertises in any case).
		if c.Tune == nil && ip != "0.0.0.0" && net.ParseIP(ip).IsUnspecified() {
			return fmt.Errorf("%w: BindAddr: %w", ErrInvalidConfig, unspecifiedAdvertiseError(c.BindAddr, ip))
		}
	}
	for i, seed := range c.Seeds {
		if seed == "" {
			return fmt.Errorf("%w: Seeds[%d] is empty", ErrInvalidConfig, i)
		}
	}
	if c.ReconnectInterval > 0 && c.ReconnectInterval < minReconnectInterval {
		return fmt.Errorf("%w: ReconnectInterval %v is below %v (negative disables reconnection)",
			ErrInvalidConfig, c.ReconnectInterval, minReconnectInterval)
	}
	if c.ReconnectTimeout < 0 {
		return fmt.Errorf("%w: ReconnectTimeout %v is negative", ErrInvalidConfig, c.ReconnectTimeout)
	}
	if d := c.withDefaults(); d.ReconnectInterval > 0 && d.ReconnectTimeout < d.ReconnectInterval {
		return fmt.Errorf("%w: ReconnectTimeout %v is shorter than ReconnectInterval %v",
			ErrInvalidConfig, d.ReconnectTimeout, d.ReconnectInterval)
	}
	return nil
}

// withDefaults returns a copy of c with empty optional fields set.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = DefaultReconnectInterval
	}
	if c.ReconnectTimeout == 0 {
		c.ReconnectTimeout = DefaultReconnectTimeout
	}
	c.Seeds = append([]string(nil), c.Seeds...)
	return c
}

// unspecifiedAdvertiseError says that binding to addr would advertise ip, an
// unspecified IP, to the other nodes.
func unspecifiedAdvertiseError(addr, ip string) error {
	return fmt.Errorf("%w: bind address %q: memberlist would advertise the unspecified IP %s, which other nodes "+
		"cannot dial; bind \":port\" for all interfaces or a specific IP, or set AdvertiseAddr in Tune",
		ErrInvalidAddr, addr, ip)
}

// splitBindAddr splits "ip:port" into memberlist's BindAddr and BindPort.
func splitBindAddr(addr string) (ip string, port int, err error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrInvalidAddr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%w: bind address %q: host must be an IP address", ErrInvalidAddr, addr)
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%w: bind address %q: port must be 0-65535", ErrInvalidAddr, addr)
	}
	return host, int(p), nil
}
