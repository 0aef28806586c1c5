package main

import (
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// startGrace is how long after a node (re)starts its pair lanes are not
// judged stuck: its peers redial it (backoff up to 500 ms), it bootstraps
// its data from them, and the messages queued for it while it was
// down expire. A pair lane's clock starts when the grace ends, so a lane
// wedged from the restart on is stuck -stuck-after later.
const startGrace = 3 * time.Second

// laneFlow is one lane toward one peer, from the sender's Stats.
type laneFlow struct {
	written uint64 // MessagesSent, over every incarnation
	pending bool   // the running incarnation holds messages for the peer
}

// flowsTo sums a node's outbound counters by peer and lane; pending comes
// from the running incarnation only (up: the last Stats).
func flowsTo(all []transport.Stats, up bool) map[cluster.NodeID]*[routing.NumLanes]laneFlow {
	by := map[cluster.NodeID]*[routing.NumLanes]laneFlow{}
	for i, s := range all {
		running := up && i == len(all)-1
		for _, c := range s.Conns {
			f := by[c.Peer]
			if f == nil {
				f = &[routing.NumLanes]laneFlow{}
				by[c.Peer] = f
			}
			f[c.Lane].written += c.MessagesSent
			if running && (c.PendingMessages > 0 || c.PendingBytes > 0) {
				f[c.Lane].pending = true
			}
		}
	}
	return by
}

// arrivalsFrom sums, over a node's Stats, the messages that reached it
// from each peer on each lane, whatever became of them: handed to a
// handler or a waiting request, dropped on arrival (expired, mostly), or
// failure reports for calls no longer waiting.
func arrivalsFrom(all []transport.Stats) map[cluster.NodeID]*[routing.NumLanes]uint64 {
	by := map[cluster.NodeID]*[routing.NumLanes]uint64{}
	for _, s := range all {
		for _, c := range s.Conns {
			a := by[c.Peer]
			if a == nil {
				a = &[routing.NumLanes]uint64{}
				by[c.Peer] = a
			}
			a[c.Lane] += c.MessagesReceived
			for r := range transport.NumReasons {
				a[c.Lane] += c.DroppedInbound[r] + c.RemoteDropped[r]
			}
		}
	}
	return by
}

// starting reports whether a node is down, or (re)started less than grace
// before now.
func (s *nodeState) starting(now time.Time, grace time.Duration) bool {
	return !s.up || now.Sub(s.upSince) < grace
}

// clusterPairSamples returns a sample of every pair lane of the cluster,
// every node being known: messages wait on the sender's side (pending, or
// written) and get through when they arrive at the receiver.
func clusterPairSamples(nodes []nodeState, now time.Time, grace time.Duration) []pairSample {
	flows := make(map[cluster.NodeID]map[cluster.NodeID]*[routing.NumLanes]laneFlow, len(nodes))
	arrivals := make(map[cluster.NodeID]map[cluster.NodeID]*[routing.NumLanes]uint64, len(nodes))
	for i := range nodes {
		flows[nodes[i].id] = flowsTo(nodes[i].stats, nodes[i].up)
		arrivals[nodes[i].id] = arrivalsFrom(nodes[i].stats)
	}
	var samples []pairSample
	for i := range nodes {
		from := &nodes[i]
		for j := range nodes {
			to := &nodes[j]
			if from.id == to.id {
				continue
			}
			excused := from.starting(now, grace) || to.starting(now, grace)
			for _, lane := range routing.Lanes {
				s := pairSample{pairLane: pairLane{From: from.id, To: to.id, Lane: lane}, Excused: excused}
				if f := flows[from.id][to.id]; f != nil {
					s.Pending, s.Written = f[lane].pending, f[lane].written
				}
				if a := arrivals[to.id][from.id]; a != nil {
					s.Moved = a[lane]
				}
				o := from.requests[peerLane{to.id, lane}]
				s.Acked, s.Failed = o.acked, o.failed
				samples = append(samples, s)
			}
		}
	}
	return samples
}

// nodePairSamples returns a sample of each of self's outbound pair lanes,
// from self's side only (node mode: the peers' counters are in other
// processes): messages wait while self holds them, and get through when
// self writes them. alive maps the peers up now to when they were first
// seen up.
func nodePairSamples(self nodeState, alive map[cluster.NodeID]time.Time, now time.Time, grace time.Duration) []pairSample {
	flows := flowsTo(self.stats, self.up)
	peers := map[cluster.NodeID]bool{}
	for peer := range flows {
		peers[peer] = true
	}
	for pl := range self.requests {
		peers[pl.peer] = true
	}
	var samples []pairSample
	for peer := range peers {
		since, up := alive[peer]
		excused := self.starting(now, grace) || !up || now.Sub(since) < grace
		for _, lane := range routing.Lanes {
			s := pairSample{pairLane: pairLane{From: self.id, To: peer, Lane: lane}, Excused: excused}
			if f := flows[peer]; f != nil {
				s.Pending, s.Moved = f[lane].pending, f[lane].written
			}
			o := self.requests[peerLane{peer, lane}]
			s.Acked, s.Failed = o.acked, o.failed
			samples = append(samples, s)
		}
	}
	return samples
}

// aliveSince follows when each member was first seen up, sample after
// sample; a member that disappears starts again when it comes back.
type aliveSince map[cluster.NodeID]time.Time

// update records the members up at now.
func (a aliveSince) update(now time.Time, members []cluster.NodeID) {
	up := make(map[cluster.NodeID]bool, len(members))
	for _, id := range members {
		up[id] = true
		if _, ok := a[id]; !ok {
			a[id] = now
		}
	}
	for id := range a {
		if !up[id] {
			delete(a, id)
		}
	}
}
