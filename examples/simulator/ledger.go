package main

import (
	"errors"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// ledger is one node's own account of what its workload handed to the
// transport, kept across restarts. Counters are atomic: the workload's
// goroutines and the transport's callbacks update them.
//
// Requests are counted by the node's replication.Replicators (started
// before each Request, acked or failed after it returns); the ledger adds
// why they failed. Gossip digests are one-way: the ledger counts the Send
// calls and their errors, and the digests dropped after Send accepted
// them (Config.OnDropped); the transport's Stats count those written.
type ledger struct {
	writesStarted, writesOK, writesSkipped atomic.Uint64
	writesFailed                           reasonCounts
	writeLatency                           histogram

	requestsFailed reasonCounts
	// otherRequests are the requests made outside the replicators (a
	// bootstrap's), and their outcomes.
	otherRequests, otherAcked atomic.Uint64
	otherFailed               reasonCounts

	gossipSends    atomic.Uint64 // Send calls
	gossipRejected reasonCounts  // Send returned an error
	gossipDropped  reasonCounts  // accepted, then dropped by the transport

	// latency is, for the small and large lanes, the round trip of the
	// replica requests this node sent and, for the urgent lane, the one-way
	// delay of the gossip digests it received (creation to handler).
	latency [routing.NumLanes]histogram

	// servedLate counts the replica writes whose handler this node's
	// transport started after their requester's deadline (cluster mode,
	// where both read one clock): work no one waited for any more.
	servedLate atomic.Uint64

	// requestsTo counts the outcomes of the replica requests this node
	// sent, by peer and lane, for the stuck detector.
	requestsMu sync.Mutex
	requestsTo map[peerLane]requestOutcomes

	// answers counts, by peer and lane, the peers' replica requests this
	// node's handler ran, and the responses to the peer the transport
	// dropped (Config.OnDropped): each request handled is answered,
	// written (Stats' ResponsesSent) or dropped (see inflight.go).
	answersMu sync.Mutex
	answers   map[peerLane]answers
}

// answers count the requests handled and the responses dropped.
type answers struct{ handled, dropped uint64 }

// answer records, for peer's request on lane, that its handler ran
// (handled) or that its response was dropped.
func (l *ledger) answer(peer cluster.NodeID, lane routing.Lane, handled bool) {
	l.answersMu.Lock()
	defer l.answersMu.Unlock()
	if l.answers == nil {
		l.answers = map[peerLane]answers{}
	}
	a := l.answers[peerLane{peer, lane}]
	if handled {
		a.handled++
	} else {
		a.dropped++
	}
	l.answers[peerLane{peer, lane}] = a
}

// answersTo returns a copy of the counts by peer and lane.
func (l *ledger) answersTo() map[peerLane]answers {
	l.answersMu.Lock()
	defer l.answersMu.Unlock()
	return maps.Clone(l.answers)
}

// peerLane is one lane toward one peer.
type peerLane struct {
	peer cluster.NodeID
	lane routing.Lane
}

// requestOutcomes count requests acknowledged and failed.
type requestOutcomes struct{ acked, failed uint64 }

// requestOutcome records the outcome of one replica request to peer.
func (l *ledger) requestOutcome(peer cluster.NodeID, lane routing.Lane, acked bool) {
	l.requestsMu.Lock()
	defer l.requestsMu.Unlock()
	if l.requestsTo == nil {
		l.requestsTo = map[peerLane]requestOutcomes{}
	}
	o := l.requestsTo[peerLane{peer, lane}]
	if acked {
		o.acked++
	} else {
		o.failed++
	}
	l.requestsTo[peerLane{peer, lane}] = o
}

// requestOutcomesTo returns a copy of the counts by peer and lane.
func (l *ledger) requestOutcomesTo() map[peerLane]requestOutcomes {
	l.requestsMu.Lock()
	defer l.requestsMu.Unlock()
	return maps.Clone(l.requestsTo)
}

// Failure reasons: the transport's, plus the workload's own.
const (
	reasonOther       = int(transport.NumReasons) + iota // an error of no known kind
	reasonUnavailable                                    // too few replicas
	reasonNoQuorum                                       // replicas failed
	numReasonSlots
)

func reasonName(i int) string {
	switch i {
	case reasonOther:
		return "other"
	case reasonUnavailable:
		return "unavailable"
	case reasonNoQuorum:
		return "no_quorum"
	}
	return transport.Reason(i).String()
}

// classify maps an error to the transport's reason for it.
func classify(err error) int {
	if r, ok := transport.ReasonOf(err); ok {
		return int(r)
	}
	return reasonOther
}

// classifyWrite names why a database write failed.
func classifyWrite(err error) int {
	var qe *replication.QuorumError
	switch {
	case errors.Is(err, replication.ErrUnavailable):
		return reasonUnavailable
	case errors.As(err, &qe):
		return reasonNoQuorum
	}
	return classify(err)
}

// reasonCounts counts failures by reason.
type reasonCounts [numReasonSlots]atomic.Uint64

func (c *reasonCounts) add(reason int) { c[reason].Add(1) }

func (c *reasonCounts) total() uint64 {
	var n uint64
	for i := range c {
		n += c[i].Load()
	}
	return n
}

// byName returns the non-zero counts keyed by reason name.
func (c *reasonCounts) byName() map[string]uint64 {
	m := map[string]uint64{}
	for i := range c {
		if v := c[i].Load(); v > 0 {
			m[reasonName(i)] = v
		}
	}
	return m
}

// onGossipSend is the Gossiper's OnSend hook.
func (l *ledger) onGossipSend(err error) {
	l.gossipSends.Add(1)
	if err != nil {
		l.gossipRejected.add(classify(err))
	}
}

// onDropped is the transport's OnDropped hook: a message it accepted and
// then failed to write.
func (l *ledger) onDropped(m transport.DroppedMessage) {
	switch {
	case m.Response:
		l.answer(m.Peer, m.Lane, false)
	case m.Verb == gossip.Verb:
		l.gossipDropped.add(int(m.Reason))
	}
}
