package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// The accounts of the report count what the senders know: a request is
// acked or failed, a digest written or dropped. A message the transport
// counted written and never delivered, or a response it never sent, ends
// its request as timed out, which those accounts take for an outcome. The
// check below looks at both ends of every pair lane instead (cluster
// mode): what the sender wrote must have arrived at the receiver, and
// every replica request a handler ran must have been answered.

// flightReport is what the check found; nil in node mode.
type flightReport struct {
	// Checked says the counters had settled before the nodes closed
	// (quiesce): nothing was on the wire any more. Otherwise the check
	// is not made (runCluster sets an unchecked report), and the report
	// says so.
	Checked bool `json:"checked"`
	// Intact counts the pair lanes whose connections never broke: no
	// node of the pair restarted, and neither end connected the lane
	// twice. Every message written on them must have arrived; on the
	// others some may have been lost with their connection.
	Intact int `json:"pair_lanes_intact"`
	// Pairs are the pair lanes whose counts disagree.
	Pairs []flightPair `json:"pairs"`
}

// flightPair is one pair lane whose counts disagree.
type flightPair struct {
	From string `json:"from"`
	To   string `json:"to"`
	Lane string `json:"lane"`
	// Written counts the messages From wrote to To on the lane
	// (MessagesSent), Failed those it dropped (Dropped), Arrived those
	// To counted from From (MessagesReceived, DroppedInbound,
	// RemoteDropped).
	Written uint64 `json:"written"`
	Failed  uint64 `json:"failed"`
	Arrived uint64 `json:"arrived"`
	// Handled counts the replica requests of To whose handler ran on
	// From, Answered the responses From wrote (ResponsesSent) or dropped
	// (OnDropped) to To on the lane.
	Handled  uint64 `json:"handled"`
	Answered uint64 `json:"answered"`
	Intact   bool   `json:"intact"`
	// Lost counts the messages with no outcome: written on an intact
	// pair lane and never arrived (or arrived more often than written),
	// arrived more often than the sender wrote or failed them, and
	// requests handled and never answered.
	Lost uint64 `json:"lost"`
}

func (p flightPair) name() string { return fmt.Sprintf("%s->%s %s", p.From, p.To, p.Lane) }

// pairLaneCounts are one pair lane's counters, from both ends.
type pairLaneCounts struct {
	written, failed, responses, connects uint64 // the sender's
	arrived, reverseConnects             uint64 // the receiver's
}

// checkFlights makes r's flight report from the nodes' final Stats, unless
// it has an unchecked one already, and returns the messages lost.
func checkFlights(r *report, nodes []*simNode, stats map[cluster.NodeID][]transport.Stats) uint64 {
	if r.InFlight != nil {
		return 0
	}
	r.InFlight = &flightReport{Checked: true, Pairs: []flightPair{}}
	counts := map[pairLane]*pairLaneCounts{}
	at := func(from, to cluster.NodeID, lane routing.Lane) *pairLaneCounts {
		k := pairLane{From: from, To: to, Lane: lane}
		if counts[k] == nil {
			counts[k] = &pairLaneCounts{}
		}
		return counts[k]
	}
	restarted := map[cluster.NodeID]bool{}
	for _, n := range nodes {
		n.mu.Lock()
		restarted[n.id] = n.restarts > 0
		n.mu.Unlock()
		for _, s := range stats[n.id] {
			for _, c := range s.Conns {
				out := at(n.id, c.Peer, c.Lane)
				out.written += c.MessagesSent
				out.responses += c.ResponsesSent
				out.connects += c.Connects
				for r := range transport.NumReasons {
					out.failed += c.Dropped[r]
				}
				in := at(c.Peer, n.id, c.Lane)
				in.arrived += c.MessagesReceived
				in.reverseConnects += c.Connects
				for r := range transport.NumReasons {
					in.arrived += c.DroppedInbound[r] + c.RemoteDropped[r]
				}
			}
		}
	}
	var lost uint64
	for _, from := range nodes {
		answers := from.ledger.answersTo()
		for _, to := range nodes {
			if from == to {
				continue
			}
			for _, lane := range routing.Lanes {
				c := at(from.id, to.id, lane)
				a := answers[peerLane{to.id, lane}]
				p := flightPair{From: string(from.id), To: string(to.id), Lane: lane.String(),
					Written: c.written, Failed: c.failed, Arrived: c.arrived,
					Handled: a.handled, Answered: c.responses + a.dropped,
					Intact: !restarted[from.id] && !restarted[to.id] && c.connects <= 1 && c.reverseConnects <= 1}
				p.Lost = p.lostMessages(lane)
				if p.Intact {
					r.InFlight.Intact++
				}
				if p.Lost > 0 {
					r.InFlight.Pairs = append(r.InFlight.Pairs, p)
					lost += p.Lost
				}
			}
		}
	}
	slices.SortFunc(r.InFlight.Pairs, func(a, b flightPair) int { return strings.Compare(a.name(), b.name()) })
	return lost
}

// lostMessages counts the pair lane's messages with no outcome. A large
// message can arrive and fail both: its sender may fail it (expired,
// reset) after its receiver had its beginning.
func (p flightPair) lostMessages(lane routing.Lane) uint64 {
	var lost uint64
	excess := func(a, b uint64) uint64 { return a - min(a, b) }
	switch {
	case lane == routing.Large:
		lost += excess(p.Arrived, p.Written+p.Failed)
		if p.Intact {
			lost += excess(p.Written, p.Arrived)
		}
	case p.Intact:
		lost += excess(p.Written, p.Arrived) + excess(p.Arrived, p.Written)
	default:
		lost += excess(p.Arrived, p.Written)
	}
	return lost + excess(p.Handled, p.Answered)
}

// writeText prints what the check found; nothing if r is nil.
func (r *flightReport) writeText(w io.Writer) {
	switch {
	case r == nil:
		return
	case !r.Checked:
		fmt.Fprintln(w, "in flight: not checked: the counters were still moving when the nodes closed")
		return
	case len(r.Pairs) == 0:
		fmt.Fprintf(w, "in flight: every message written arrived (%d pair lanes whose connections never broke), every replica request handled was answered\n",
			r.Intact)
		return
	}
	fmt.Fprintf(w, "in flight: %d pair lanes lost messages (written, not arrived; or handled, not answered):\n", len(r.Pairs))
	for _, p := range r.Pairs {
		fmt.Fprintf(w, "  %-16s written %d, failed %d, arrived %d; requests handled %d, answered %d; lost %d\n",
			p.name(), p.Written, p.Failed, p.Arrived, p.Handled, p.Answered, p.Lost)
	}
}
