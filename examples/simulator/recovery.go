package main

import (
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
)

// recovery follows the restarted node back: when it stopped and started,
// when a replica request to it was first acknowledged again, and when each
// other node first gossiped about its new generation.
type recovery struct {
	start time.Time // the run's

	mu           sync.Mutex
	node         cluster.NodeID
	stoppedAt    time.Time
	restartedAt  time.Time
	generation   uint64
	firstAck     time.Time
	seenBy       map[cluster.NodeID]time.Time
	waitingPeers int
	boot         *bootstrapReport
}

// bootstrapReport is what the restarted node pulled from its peers.
type bootstrapReport struct {
	From      []string `json:"from"`
	FileBytes int64    `json:"file_bytes"`
	Applied   int      `json:"applied"`
	TookMs    float64  `json:"took_ms"`
	Error     string   `json:"error,omitempty"`
}

func (r *recovery) bootstrapped(from []cluster.NodeID, bytes int64, applied int, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.boot = &bootstrapReport{FileBytes: bytes, Applied: applied, TookMs: ms(took)}
	for _, id := range from {
		r.boot.From = append(r.boot.From, string(id))
	}
	if err != nil {
		r.boot.Error = err.Error()
	}
}

func (r *recovery) stopped(node cluster.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.node, r.stoppedAt = node, time.Now()
}

func (r *recovery) restarted(generation uint64, peers int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.restartedAt, r.generation = time.Now(), generation
	r.seenBy = map[cluster.NodeID]time.Time{}
	r.waitingPeers = peers
}

// acked records an acknowledged request to replica.
func (r *recovery) acked(replica cluster.NodeID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if replica == r.node && !r.restartedAt.IsZero() && r.firstAck.IsZero() {
		r.firstAck = time.Now()
	}
}

// sawGossip records whether observer's gossip now knows the restarted
// node's new generation. It is called for every digest received: the
// common case (nothing to record) takes the lock and returns.
func (r *recovery) sawGossip(observer cluster.NodeID, g *gossip.Gossiper) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.restartedAt.IsZero() || observer == r.node || !r.seenBy[observer].IsZero() {
		return
	}
	if e, ok := g.Known(r.node); ok && e.Generation == r.generation {
		r.seenBy[observer] = time.Now()
	}
}

// recoveryReport is what the report says of the restart.
type recoveryReport struct {
	Node        string  `json:"node"`
	StoppedAt   float64 `json:"stopped_at_s"`
	RestartedAt float64 `json:"restarted_at_s"`
	// FirstAckAfter is the time from the restart to the first replica
	// request the restarted node acknowledged; -1 if none was.
	FirstAckAfter float64 `json:"first_ack_after_ms"`
	// GossipSeenAfter is the time from the restart until every other node
	// had gossip of the new generation; -1 if some never did.
	GossipSeenAfter float64 `json:"gossip_seen_after_ms"`
	SeenBy          int     `json:"gossip_seen_by"`
	Peers           int     `json:"peers"`
	// Bootstrap is how the restarted node, its data lost, got the data it
	// owns back.
	Bootstrap *bootstrapReport `json:"bootstrap,omitempty"`
}

func (r *recovery) report() *recoveryReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stoppedAt.IsZero() {
		return nil
	}
	rep := &recoveryReport{Node: string(r.node), StoppedAt: r.stoppedAt.Sub(r.start).Seconds(),
		FirstAckAfter: -1, GossipSeenAfter: -1, Peers: r.waitingPeers}
	if r.restartedAt.IsZero() {
		return rep
	}
	rep.RestartedAt = r.restartedAt.Sub(r.start).Seconds()
	rep.Bootstrap = r.boot
	if !r.firstAck.IsZero() {
		rep.FirstAckAfter = ms(r.firstAck.Sub(r.restartedAt))
	}
	var last time.Time
	for _, at := range r.seenBy {
		if at.After(last) {
			last = at
		}
	}
	rep.SeenBy = len(r.seenBy)
	if len(r.seenBy) == r.waitingPeers && !last.IsZero() {
		rep.GossipSeenAfter = ms(last.Sub(r.restartedAt))
	}
	return rep
}
