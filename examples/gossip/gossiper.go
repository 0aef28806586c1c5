package gossip

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// Verb is the transport verb of gossip digests. Both ends must agree on it;
// change it if it clashes with one of your own verbs.
const Verb transport.Verb = 100

// Defaults used by New.
const (
	DefaultInterval    = 100 * time.Millisecond
	DefaultFanout      = 3
	DefaultForgetAfter = time.Minute
)

// Register pins Verb to the urgent lane in cfg, so that digests never wait
// behind replication or other bulk traffic to the same peer. Call it before
// transport.New. It copies cfg.Lanes.Overrides rather than writing into a map
// the caller may share.
func Register(cfg *transport.Config) {
	overrides := maps.Clone(cfg.Lanes.Overrides)
	if overrides == nil {
		overrides = make(map[transport.Verb]routing.Lane)
	}
	overrides[Verb] = routing.Urgent
	cfg.Lanes.Overrides = overrides
}

// Sender is the part of *transport.Transport a Gossiper uses.
type Sender interface {
	Send(ctx context.Context, to cluster.NodeID, verb transport.Verb, payload []byte) error
}

var _ Sender = (*transport.Transport)(nil)

// Config configures a Gossiper. Self, Sender and Peers are required.
type Config struct {
	// Self is this node's ID.
	Self cluster.NodeID
	// Sender sends the digests: usually the node's *transport.Transport.
	Sender Sender
	// Peers returns the nodes to gossip with (Self, if present, is skipped),
	// typically the IDs of cluster.Membership.Members. Called every round,
	// without the Gossiper's lock: it may call the Gossiper (Stale, say).
	Peers func() []cluster.NodeID

	// Fanout is how many peers each round sends to. Default 3.
	Fanout int
	// Interval is the time between rounds; a digest not written within one
	// interval expires. Default 100 ms.
	Interval time.Duration
	// ForgetAfter is how long a node's heartbeat may stand still before
	// the node is taken for departed and dropped from the table (see
	// State.Forget); it must be well above the Interval and the periods
	// passed to Stale, as a forgotten node is no longer reported stale.
	// Default 1 minute.
	ForgetAfter time.Duration
	// Generation is this run's first generation (see Entry). Default: Now()
	// in nanoseconds, so that a restarted node's generation is larger. If
	// gossip shows a previous run of Self at a larger one (its clock was
	// ahead), the Gossiper moves to a generation above that.
	Generation uint64
	// Rand picks the peers. Default: a PCG source seeded from Generation
	// and Self.
	Rand *rand.Rand
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnSend, if set, is called after each digest Send with its result
	// (nil: queued; the transport then counts it written or dropped).
	OnSend func(to cluster.NodeID, err error)
}

// Gossiper runs the protocol for one node. It is safe for concurrent use: its
// handler (ServeMessage) runs on the transport's goroutines while Round runs
// on the caller's.
type Gossiper struct {
	cfg Config

	mu    sync.Mutex // guards state and rand
	state *State
}

var _ transport.Handler = (*Gossiper)(nil)

// New returns a Gossiper for cfg, with defaults filled into its own copy.
func New(cfg Config) (*Gossiper, error) {
	if cfg.Self == "" || cfg.Sender == nil || cfg.Peers == nil {
		return nil, errors.New("gossip: Config needs Self, Sender and Peers")
	}
	if cfg.Fanout <= 0 {
		cfg.Fanout = DefaultFanout
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = DefaultForgetAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	now := cfg.Now()
	if cfg.Generation == 0 {
		cfg.Generation = uint64(now.UnixNano())
	}
	if cfg.Rand == nil {
		h := fnv.New64a()
		h.Write([]byte(cfg.Self))
		cfg.Rand = rand.New(rand.NewPCG(cfg.Generation, h.Sum64()))
	}
	return &Gossiper{cfg: cfg, state: NewState(cfg.Self, cfg.Generation, now)}, nil
}

// Round runs one gossip round: it forgets the nodes departed (ForgetAfter),
// beats this node's heartbeat and sends the digest (at most
// MaxDigestEntries entries: see State.Digest) to Fanout random peers.
// It returns how many digests were queued and the errors of those that
// were not (joined).
func (g *Gossiper) Round(ctx context.Context) (queued int, err error) {
	now := g.cfg.Now()
	// Outside the lock: Peers is the caller's, and may ask the Gossiper
	// (Stale, to skip suspects) or take its time asking the membership.
	candidates := g.cfg.Peers()
	g.mu.Lock()
	// Before the digest, so as not to spread what this node forgets.
	g.state.Forget(now, g.cfg.ForgetAfter)
	g.state.Beat(now)
	// A receiver refuses a digest past MaxDigestEntries: a larger table
	// goes out over several rounds.
	digest := AppendDigest(nil, g.state.Digest(MaxDigestEntries))
	peers := PickPeers(g.cfg.Rand, candidates, g.cfg.Self, g.cfg.Fanout)
	g.mu.Unlock()

	// The news is stale by the next round: let the transport drop it then.
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Interval)
	defer cancel()
	var errs []error
	for _, peer := range peers {
		// The peers share digest: the transport may hold it until written,
		// and nothing modifies it.
		sendErr := g.cfg.Sender.Send(ctx, peer, Verb, digest)
		if g.cfg.OnSend != nil {
			g.cfg.OnSend(peer, sendErr)
		}
		if sendErr != nil {
			errs = append(errs, sendErr)
			continue
		}
		queued++
	}
	return queued, errors.Join(errs...)
}

// Run calls Round on every tick until ctx ends, then returns ctx.Err().
// Pass time.NewTicker(DefaultInterval).C, or a channel of your own in tests.
// Failed sends do not stop it: gossip is retried by the next round anyway.
func (g *Gossiper) Run(ctx context.Context, ticks <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticks:
			_, _ = g.Round(ctx) // the transport counts what failed; the next round retries
		}
	}
}

// ServeMessage implements transport.Handler: it merges a received digest.
func (g *Gossiper) ServeMessage(ctx context.Context, m *transport.Message) ([]byte, error) {
	digest, err := DecodeDigest(m.Payload)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", m.From, err)
	}
	now := g.cfg.Now()
	g.mu.Lock()
	g.state.Merge(digest, now)
	g.mu.Unlock()
	return nil, nil
}

// Known returns what this node knows of node id.
func (g *Gossiper) Known(id cluster.NodeID) (Entry, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.state.entries[id]
	return e, ok
}

// Entries returns a copy of this node's heartbeat table.
func (g *Gossiper) Entries() map[cluster.NodeID]Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state.Entries()
}

// Stale returns the nodes whose heartbeat has not moved for longer than
// after, as seen from this node: the ones to suspect.
func (g *Gossiper) Stale(after time.Duration) []cluster.NodeID {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state.Stale(now, after)
}

// Generation returns this run's current generation: Config.Generation, or
// above a previous run's if gossip showed a larger one.
func (g *Gossiper) Generation() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state.entries[g.cfg.Self].Generation
}
