package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// world is what the nodes of one run share.
type world struct {
	opts        options
	clusterName string
	// members is what the transports resolve peers with.
	members cluster.Membership
	// liveIDs returns the members to gossip with, self included.
	liveIDs func() []cluster.NodeID
	// replicaIDs, if set, returns the members to replicate to, given the
	// peers the node has received gossip from; default liveIDs.
	replicaIDs func(heardFrom func(cluster.NodeID) bool) []cluster.NodeID
	start      time.Time
	logger     *slog.Logger
	router     *routing.Router // to tell which lane a request of a given size took
	recovery   *recovery       // nil without a restart
	// ca, with -tls, issues the nodes' certificates.
	ca *clusterCA
	// metrics, if set, serves the transports' metrics.
	metrics *metricsServer
}

// incarnation is one run of a node: a transport and the workload's parts
// bound to it. A restart replaces it.
type incarnation struct {
	t          *transport.Transport
	gossiper   *gossip.Gossiper
	replicator *replication.Replicator
}

// simNode is one node of the simulated database. Its ledger survives
// restarts, and so does its store (its data on disk) unless the restart
// loses it; its transport, gossiper and replicator do not.
type simNode struct {
	id     cluster.NodeID
	w      *world
	ledger ledger
	// slow is the time the node's disk takes per write (0: no slow disk),
	// and slowPerByte per byte of the write. Its writes share the disk, one
	// at a time, whichever peer and lane they came from.
	slow        time.Duration
	slowPerByte time.Duration
	disk        sync.Mutex // held by the write being stored, and by a stall

	heardMu   sync.Mutex
	heardFrom map[cluster.NodeID]bool // peers that sent this node gossip

	// mu guards the fields below. It is held across Close, which waits for
	// the transport's handlers: handlers must not take it.
	mu      sync.Mutex
	addr    string // fixed by the first start: a restart binds it again
	store   *replication.Store
	current *incarnation
	// past holds the final Stats of closed incarnations, so that counters
	// survive restarts.
	past        []transport.Stats
	replicators []*replication.Replicator // every incarnation's, for Drain and Counts
	restarts    int
	startedAt   time.Time // when the running incarnation started
	// meters receives the transports' metrics, across restarts; nil
	// without -metrics-addr.
	meters metric.MeterProvider
	tls    *transport.TLSConfig // nil without -tls
}

func newSimNode(w *world, id cluster.NodeID, addr string) (*simNode, error) {
	meters, err := w.metrics.provider(id)
	if err != nil {
		return nil, err
	}
	n := &simNode{id: id, w: w, store: replication.NewStore(), addr: addr,
		heardFrom: map[cluster.NodeID]bool{}, meters: meters}
	if w.ca != nil {
		if n.tls, err = w.ca.tlsConfig(w.clusterName, id); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// transportConfig is the transport configuration every node of the run
// uses.
func (n *simNode) transportConfig() transport.Config {
	cfg := transport.DefaultConfig()
	cfg.NodeID = n.id
	cfg.ClusterName = n.w.clusterName
	cfg.ListenAddr = n.addr
	cfg.Membership = n.w.members
	cfg.Lanes.Coalescing = n.w.opts.coalescingFor()
	cfg.Telemetry.Logger = n.w.logger
	// Come back quickly after a peer restarts: it is down for seconds only.
	cfg.Reconnect.MinBackoff = 20 * time.Millisecond
	cfg.Reconnect.MaxBackoff = 500 * time.Millisecond
	cfg.OnDropped = n.ledger.onDropped
	if n.meters != nil {
		cfg.Telemetry.MeterProvider = n.meters
	}
	cfg.Security.TLS = n.tls
	cfg.Memory.MaxMessageSize = maxMessageSize(n.w.opts.valueSize)
	if testDialer != nil {
		if d := testDialer(n.id); d != nil {
			cfg.Dialer = d
		}
	}
	cfg.Memory.Outbound, cfg.Memory.Inbound = simulatorLimits(cfg.Memory.MaxMessageSize)
	gossip.Register(&cfg)
	return cfg
}

// testDialer, set by tests only, returns the dialer of a node's transport
// (nil: the default), to inject faults below the transport.
var testDialer func(from cluster.NodeID) transport.Dialer

// simulatorLimits are tighter than the transport's defaults (4 MiB per
// connection, 128 MiB per peer, 512 MiB per node), so that a slow node
// fills them within seconds and back-pressure shows: the slow node pauses
// reading, TCP pushes back, and its peers' queues grow until sends fail
// fast as overloaded. A peer's reserve still holds the largest message.
func simulatorLimits(maxMessage int) (outbound, inbound transport.Limits) {
	outPeer, inPeer := max(2<<20, int64(maxMessage)), int64(maxMessage)
	outbound = transport.Limits{PerConnection: 512 << 10, PerPeer: outPeer, Node: 8 * outPeer}
	inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: inPeer, Node: 8 * inPeer}
	return outbound, inbound
}

// maxMessageSize is the largest write the workload makes (see valueSize),
// with room for its key and headers.
func maxMessageSize(typicalValue int) int {
	return max(1<<20, 16*typicalValue+typicalValue) + 64<<10
}

// start starts a new incarnation of the node, whose gossip generation is
// generation (0: the current time).
func (n *simNode) start(generation uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.current != nil {
		return fmt.Errorf("%s: already running", n.id)
	}
	t, err := transport.New(n.transportConfig())
	if err != nil {
		return fmt.Errorf("%s: %w", n.id, err)
	}
	g, err := gossip.New(gossip.Config{
		Self: n.id, Sender: t, Peers: n.w.liveIDs, Generation: generation,
		OnSend: func(_ cluster.NodeID, err error) { n.ledger.onGossipSend(err) },
	})
	if err != nil {
		t.Close()
		return err
	}
	r, err := replication.New(replication.Config{
		Self: n.id, Requester: t, Local: n.store, Timeout: n.w.opts.timeout, OnReply: n.onReply,
	})
	if err != nil {
		t.Close()
		return err
	}
	t.Handle(gossip.Verb, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		n.ledger.latency[routing.Urgent].record(time.Since(m.CreatedAt))
		n.heard(m.From)
		resp, err := g.ServeMessage(ctx, m)
		if n.w.recovery != nil {
			n.w.recovery.sawGossip(n.id, g)
		}
		return resp, err
	}))
	t.Handle(replication.Verb, n.storeHandler(n.store))
	t.Handle(probeVerb, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		return nil, nil // arrived: the transport's Stats count it
	}))
	replication.ServeBootstrap(t, n.store, "")
	t.Start()
	n.addr = t.Addr().String()
	n.current = &incarnation{t: t, gossiper: g, replicator: r}
	n.startedAt = time.Now()
	n.replicators = append(n.replicators, r)
	return nil
}

// storeHandler is the replica's write handler: the store, slowed down on
// the slow node as by a struggling disk that every write must go through.
//
// It counts the requests it is handed, each of which the transport must
// answer (ledger.answer, for the check in inflight.go); and in cluster
// mode, where the requester reads the same clock, the writes it is handed
// after their requester gave up (ledger.servedLate): after the message's
// creation plus the timeout.
func (n *simNode) storeHandler(store *replication.Store) transport.Handler {
	count := func(m *transport.Message) {
		if m.IsRequest {
			n.ledger.answer(m.From, m.Lane, true) // the transport answers it once this returns
		}
		if n.w.opts.mode == "cluster" && time.Since(m.CreatedAt) > n.w.opts.timeout {
			n.ledger.servedLate.Add(1)
		}
	}
	if n.slow == 0 {
		return transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			count(m)
			return store.ServeMessage(ctx, m)
		})
	}
	return transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		count(m)
		n.disk.Lock()
		defer n.disk.Unlock()
		timer := time.NewTimer(n.slow + time.Duration(len(m.Payload))*n.slowPerByte)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done(): // expired or closing: the requester has given up
			return nil, nil // nothing stored; the response, if any, expires too
		}
		return store.ServeMessage(ctx, m)
	})
}

// stallDisk blocks the node's disk for d, as an fsync stall or a GC
// pause would: every write waits.
func (n *simNode) stallDisk(ctx context.Context, d time.Duration) {
	n.disk.Lock()
	defer n.disk.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// onReply is the replicator's hook: one replica's outcome.
func (n *simNode) onReply(r replication.Reply) {
	if r.Local {
		return // applied locally: not a message
	}
	// Value sizes stay clear of the 64 KiB threshold (see valueSizes), so
	// the payload's size tells the lane despite the header's few bytes.
	lane := n.w.router.Route(uint32(replication.Verb), r.Size)
	n.ledger.requestOutcome(r.Replica, lane, r.Err == nil)
	if r.Err != nil {
		n.ledger.requestsFailed.add(classify(r.Err))
		return
	}
	n.ledger.latency[lane].record(r.Latency)
	if n.w.recovery != nil {
		n.w.recovery.acked(r.Replica)
	}
}

// heard records that peer sent this node gossip: peer's membership knows
// this node, so it can answer this node's requests.
func (n *simNode) heard(peer cluster.NodeID) {
	n.heardMu.Lock()
	defer n.heardMu.Unlock()
	n.heardFrom[peer] = true
}

// replicas returns the members this node's writes go to.
func (n *simNode) replicas() []cluster.NodeID {
	if n.w.replicaIDs == nil {
		return n.w.liveIDs()
	}
	return n.w.replicaIDs(func(peer cluster.NodeID) bool {
		n.heardMu.Lock()
		defer n.heardMu.Unlock()
		return n.heardFrom[peer]
	})
}

// incarnation returns the running incarnation, nil while the node is down.
func (n *simNode) incarnation() *incarnation {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.current
}

// stop closes the running incarnation, failing what it still holds, and
// keeps its final counters. With graceful, it first lets queued messages be
// written (Shutdown), for at most a few seconds.
func (n *simNode) stop(graceful bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	inc := n.current
	if inc == nil {
		return
	}
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		inc.t.Shutdown(ctx)
		cancel()
	}
	inc.t.Close()
	n.past = append(n.past, inc.t.Stats())
	n.current = nil
}

// loseData replaces the node's store with an empty one, as when a node
// comes back with a new disk. Call it while the node is down.
func (n *simNode) loseData() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.store = replication.NewStore()
}

// bootstrap pulls the data files of peers into the node's store with
// replication.Bootstrap (SendFile), keeping the keys the node owns. Its
// requests are counted with the others.
func (n *simNode) bootstrap(ctx context.Context, peers []cluster.NodeID) ([]replication.Pulled, error) {
	n.mu.Lock()
	inc, store := n.current, n.store
	n.mu.Unlock()
	if inc == nil {
		return nil, fmt.Errorf("%s is down", n.id)
	}
	owned := func(key string) bool {
		return slices.Contains(replication.Replicas(key, n.w.liveIDs(), replication.DefaultFactor), n.id)
	}
	n.ledger.otherRequests.Add(uint64(len(peers)))
	pulled, err := replication.Bootstrap(ctx, inc.t, store, peers, owned, "")
	for _, p := range pulled {
		if p.Err != nil {
			n.ledger.otherFailed.add(classify(p.Err))
		} else {
			n.ledger.otherAcked.Add(1)
		}
	}
	return pulled, err
}

// drain waits for the replica requests of every incarnation to return.
func (n *simNode) drain(ctx context.Context) {
	n.mu.Lock()
	replicators := append([]*replication.Replicator(nil), n.replicators...)
	n.mu.Unlock()
	for _, r := range replicators {
		r.Drain(ctx)
	}
}

// requestCounts sums the replicators' counters.
func (n *simNode) requestCounts() replication.Counts {
	n.mu.Lock()
	defer n.mu.Unlock()
	var sum replication.Counts
	for _, r := range n.replicators {
		c := r.Counts()
		sum.Requests += c.Requests
		sum.Acked += c.Acked
		sum.Failed += c.Failed
		sum.Local += c.Local
	}
	return sum
}

// nodeState is a node at one moment, as the progress samples see it.
type nodeState struct {
	id       cluster.NodeID
	up       bool
	upSince  time.Time         // when the running incarnation started
	stats    []transport.Stats // every incarnation's, the running one's last
	requests map[peerLane]requestOutcomes
}

// state returns the node's state now.
func (n *simNode) state() nodeState {
	n.mu.Lock()
	s := nodeState{id: n.id, up: n.current != nil, upSince: n.startedAt,
		stats: append([]transport.Stats(nil), n.past...)}
	if n.current != nil {
		s.stats = append(s.stats, n.current.t.Stats())
	}
	n.mu.Unlock()
	s.requests = n.ledger.requestOutcomesTo()
	return s
}

// stats returns every incarnation's Stats, the running one's last, and
// whether the node is up.
func (n *simNode) stats() ([]transport.Stats, bool) {
	s := n.state()
	return s.stats, s.up
}
