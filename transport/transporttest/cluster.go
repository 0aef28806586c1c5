package transporttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// Options shape a test cluster.
type Options struct {
	// Tweak, when set, adjusts node i's config before it starts.
	Tweak func(i int, cfg *transport.Config)
	// Proxied puts a Proxy in front of every node: its membership address
	// is the proxy's, so every connection to it crosses the proxy.
	Proxied bool
	// ClusterName defaults to "test".
	ClusterName string
	// CA, when set, makes every node mutual TLS with a certificate from it
	// (CA.TLSConfig), before Tweak runs.
	CA *CA
	// InMemory runs the nodes over a Network of their own (Cluster.Network)
	// instead of loopback TCP: node n1 is host "n1", and so on. Its
	// faults (Partition, Blackhole, Delay, Cut) need no root and no
	// proxy. It cannot be combined with Proxied.
	InMemory bool
}

// Cluster is N transports on loopback, or on an in-memory Network, named
// n1..nN, sharing one static membership. Its fields are for reading; use the methods to change it. A
// Cluster is not safe for concurrent use, but its nodes are.
type Cluster struct {
	Members *cluster.Static
	Nodes   []*transport.Transport
	Configs []transport.Config
	Proxies []*Proxy // nil unless Options.Proxied
	// Network carries the nodes' connections if Options.InMemory; the
	// cluster closes it in Close. Its hosts are named by node ID.
	Network *Network

	closed bool // Close has run: Add or Restart would start a node no one closes
}

// ErrClosed is Add's and Restart's error after Close.
var ErrClosed = errors.New("transporttest: the cluster is closed")

// Config returns the config of a test node: listening on 127.0.0.1 at a
// port the system picks, reconnecting after 5 to 50 ms, logging nothing.
func Config(id cluster.NodeID, clusterName string, members cluster.Membership) transport.Config {
	cfg := transport.DefaultConfig()
	cfg.NodeID = id
	cfg.ClusterName = clusterName
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Membership = members
	cfg.Telemetry.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Reconnect.MinBackoff = 5 * time.Millisecond
	cfg.Reconnect.MaxBackoff = 50 * time.Millisecond
	return cfg
}

// Start starts n nodes. On error it closes what it started.
func Start(n int, o Options) (*Cluster, error) {
	if o.ClusterName == "" {
		o.ClusterName = "test"
	}
	if o.InMemory && o.Proxied {
		return nil, errors.New("transporttest: Options.InMemory and Proxied cannot be combined: the Network has its own faults")
	}
	c := &Cluster{Members: cluster.NewStatic()}
	if o.InMemory {
		c.Network = NewNetwork()
	}
	for i := range n {
		cfg := Config(cluster.NodeID(fmt.Sprintf("n%d", i+1)), o.ClusterName, c.Members)
		if c.Network != nil {
			c.Network.Host(string(cfg.NodeID)).Configure(&cfg)
		}
		if o.CA != nil {
			var err error
			if cfg.Security.TLS, err = o.CA.TLSConfig(cfg.NodeID); err != nil {
				c.Close()
				return nil, err
			}
		}
		if o.Tweak != nil {
			o.Tweak(i, &cfg)
		}
		if _, err := c.add(cfg, o.Proxied); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// New starts n nodes for a test, failing it on error, and closes them when
// it ends.
func New(tb testing.TB, n int, o Options) *Cluster {
	tb.Helper()
	c, err := Start(n, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Add starts one more node with cfg (its Membership is replaced by the
// cluster's) and makes it a member. On an in-memory cluster, configure cfg
// with c.Network.Host(name).Configure first. After Close it returns
// ErrClosed and starts nothing.
func (c *Cluster) Add(cfg transport.Config) (*transport.Transport, error) {
	if c.closed {
		return nil, ErrClosed
	}
	return c.add(cfg, false)
}

func (c *Cluster) add(cfg transport.Config, proxied bool) (*transport.Transport, error) {
	cfg.Membership = c.Members
	tr, err := transport.New(cfg)
	if err != nil {
		return nil, err
	}
	tr.Start()
	addr := tr.Addr().String()
	var p *Proxy
	if proxied {
		if p, err = NewProxy(addr); err != nil {
			tr.Close()
			return nil, err
		}
		addr = p.Addr()
	}
	c.Nodes = append(c.Nodes, tr)
	c.Configs = append(c.Configs, cfg)
	if proxied || c.Proxies != nil {
		c.Proxies = append(c.Proxies, p)
	}
	c.Members.Add(cluster.Member{ID: cfg.NodeID, Addr: addr})
	return tr, nil
}

// ID returns node i's ID.
func (c *Cluster) ID(i int) cluster.NodeID { return c.Configs[i].NodeID }

// HandleAll registers h for verb on every node.
func (c *Cluster) HandleAll(verb transport.Verb, h transport.Handler) {
	for _, n := range c.Nodes {
		n.Handle(verb, h)
	}
}

// Restart closes node i and starts it again with the same config, on the
// same address (its proxy, if any, stays), as a process that restarts.
// The new transport has no handlers: register them on the transport it
// returns (also c.Nodes[i] from then on), or with RestartWith, before it
// starts. After Close it returns ErrClosed and starts nothing.
func (c *Cluster) Restart(i int) (*transport.Transport, error) { return c.RestartWith(i, nil) }

// RestartWith is Restart, calling setup, if not nil, with the new
// transport before it starts, as a restarting process registers its
// handlers before it serves: what its peers queued for it meanwhile, or
// send as it comes up, then finds them, where after Restart a message that
// arrives before the test registers them is dropped (ReasonUnknownVerb).
func (c *Cluster) RestartWith(i int, setup func(*transport.Transport)) (*transport.Transport, error) {
	if c.closed {
		return nil, ErrClosed
	}
	addr := c.Nodes[i].Addr().String()
	if err := c.Nodes[i].Close(); err != nil {
		return nil, err
	}
	cfg := c.Configs[i]
	cfg.ListenAddr = addr
	tr, err := transport.New(cfg)
	if err != nil {
		return nil, err
	}
	if setup != nil {
		setup(tr)
	}
	tr.Start()
	c.Nodes[i] = tr
	return tr, nil
}

// Stats returns every node's Stats, in node order.
func (c *Cluster) Stats() []transport.Stats {
	out := make([]transport.Stats, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Stats()
	}
	return out
}

// Total sums every lane of every node.
func (c *Cluster) Total() transport.ConnStats {
	var all transport.Stats
	for _, s := range c.Stats() {
		all.Conns = append(all.Conns, s.Conns...)
	}
	return all.Total()
}

// Quiet reports whether no node holds anything: nothing queued, being
// written or waiting for a handler, in either direction. It does not see
// bytes on their way between nodes, written and not yet read: in a
// socket's buffers, or on a Network, held back by a Delay (for as long as
// it lasts) or a partition. So it may hold before a message sent has
// reached its handler; a test that needs its messages delivered waits
// for their handlers.
func (c *Cluster) Quiet() bool {
	for _, s := range c.Stats() {
		if s.OutboundBytes != 0 || s.InboundHeld != 0 || s.Total().PendingBytes != 0 {
			return false
		}
	}
	return true
}

// WaitQuiet polls Quiet until it holds or ctx ends. Messages under way
// between nodes may not have arrived yet (see Quiet).
func (c *Cluster) WaitQuiet(ctx context.Context) error {
	return poll(ctx, c.Quiet)
}

// WaitConnected waits until node from has an established connection to
// node to on some lane, or ctx ends.
func (c *Cluster) WaitConnected(ctx context.Context, from, to int) error {
	return poll(ctx, func() bool {
		for _, cs := range c.Nodes[from].Stats().Conns {
			if cs.Peer == c.ID(to) && cs.Connected {
				return true
			}
		}
		return false
	})
}

// poll checks cond every millisecond until it holds or ctx ends.
func poll(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return errors.Join(errors.New("transporttest: condition not reached"), ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Close closes every node and proxy. Safe to call more than once.
func (c *Cluster) Close() {
	c.closed = true
	for _, n := range c.Nodes {
		n.Close()
	}
	for _, p := range c.Proxies {
		if p != nil {
			p.Close()
		}
	}
	if c.Network != nil {
		c.Network.Close()
	}
}
