package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// report is what a run found; printed as text, JSON (-json) or HTML
// (-report).
type report struct {
	Mode  string `json:"mode"`
	Nodes int    `json:"nodes"`
	// DurationS is -duration; WorkloadS how long the workload ran (from
	// its start to its stop: -duration unless interrupted); DrainS how long
	// the nodes then took to finish what was in flight (writes, a restart
	// under way), drain and close; ElapsedS the whole run, setup included.
	DurationS   float64         `json:"duration_s"`
	WorkloadS   float64         `json:"workload_s"`
	DrainS      float64         `json:"drain_s"`
	ElapsedS    float64         `json:"elapsed_s"`
	Rate        int             `json:"rate_per_node"`
	ValueSize   int             `json:"value_size"`
	Strategy    string          `json:"strategy"`
	TimeoutMs   float64         `json:"request_timeout_ms"`
	TLS         bool            `json:"tls"`
	Faults      []string        `json:"faults"`
	Events      []event         `json:"events"`
	Recovery    *recoveryReport `json:"recovery,omitempty"`
	PerNode     []nodeReport    `json:"per_node"`
	Series      []sample        `json:"series"`
	Stuck       *stuckReport    `json:"stuck"`
	InFlight    *flightReport   `json:"in_flight,omitempty"` // cluster mode: see flightReport
	Notes       []string        `json:"notes,omitempty"`
	Summary     summary         `json:"summary"`
	SummaryLine string          `json:"summary_line"`
}

// event is something that happened to the cluster during the run.
type event struct {
	T    float64 `json:"t_s"`
	Node string  `json:"node"`
	What string  `json:"what"`
}

type nodeReport struct {
	ID       string       `json:"id"`
	Restarts int          `json:"restarts"`
	Slow     bool         `json:"slow"`
	Lanes    []laneReport `json:"lanes"`
	Writes   writeReport  `json:"writes"`
	// Requests are the replica requests (transport.Request) this node
	// sent; Gossip the digests (transport.Send).
	Requests account `json:"requests"`
	Gossip   account `json:"gossip"`
	// StoreKeys and StoreBytes are what the node's replica holds at the end.
	StoreKeys  int   `json:"store_keys"`
	StoreBytes int64 `json:"store_bytes"`
	// ServedLate counts the replica writes this node's transport handed
	// to their handler after their requester's deadline had passed:
	// work for no one (cluster mode only, where the two share a clock).
	ServedLate *uint64 `json:"served_late,omitempty"`
}

// laneReport is one lane of one node, from the transport's Stats: the
// messages this node sent on it (requests, responses, gossip) and the
// latency its workload measured there.
type laneReport struct {
	Lane    string `json:"lane"`
	Sent    uint64 `json:"sent"`    // handed to the lane: written + failed
	Written uint64 `json:"written"` // written to the socket
	// Delivered counts the messages that reached the peer's handler or
	// waiting request, from the peers' Stats (cluster mode only).
	Delivered *uint64 `json:"delivered,omitempty"`
	// PeerDropped counts the messages the peers received and dropped
	// before a handler saw them (expired on arrival, mostly), by reason
	// (cluster mode only). Written - Delivered - PeerDropped were lost in
	// flight: written just before a connection broke (at most once).
	PeerDropped   *uint64           `json:"peer_dropped,omitempty"`
	PeerDroppedBy map[string]uint64 `json:"peer_dropped_by,omitempty"`
	Failed        uint64            `json:"failed"`
	FailedBy      map[string]uint64 `json:"failed_by"`
	Bytes         uint64            `json:"bytes"`
	SocketWrites  uint64            `json:"socket_writes"`
	MsgsPerWrite  float64           `json:"msgs_per_write"`
	Connects      uint64            `json:"connects"`
	// Received and Paused are inbound: messages from peers handed to this
	// node's handlers, and times it paused reading for want of capacity.
	Received uint64      `json:"received"`
	Paused   uint64      `json:"paused"`
	PausedMs float64     `json:"paused_ms"`
	Latency  percentiles `json:"latency"`
}

type writeReport struct {
	Started  uint64            `json:"started"`
	OK       uint64            `json:"ok"`
	Failed   uint64            `json:"failed"`
	FailedBy map[string]uint64 `json:"failed_by"`
	Skipped  uint64            `json:"skipped"` // not started: too many in flight
	Latency  percentiles       `json:"latency"`
}

// account is the fate of the messages of one kind a node sent. Lost =
// Sent - Delivered - Failed: messages with no outcome at all.
type account struct {
	Sent      uint64            `json:"sent"`
	Delivered uint64            `json:"delivered"`
	Failed    uint64            `json:"failed"`
	FailedBy  map[string]uint64 `json:"failed_by"`
	Lost      int64             `json:"lost"`
}

// summary is the run in one line. Writes and WritesFailed are database
// writes the nodes coordinated, and those that failed; a write that failed
// for want of replicas (unavailable) sent no message at all. Sent,
// Delivered, Failed and Lost count messages: replica requests and gossip
// digests.
type summary struct {
	Nodes        int    `json:"nodes"`
	Writes       uint64 `json:"writes"`
	WritesFailed uint64 `json:"writes_failed"`
	Sent         uint64 `json:"sent"`
	Delivered    uint64 `json:"delivered"`
	Failed       uint64 `json:"failed"`
	// Lost sums the accounts' lost, counting a negative one (messages
	// counted twice) as positive, so that neither hides the other.
	Lost int64 `json:"lost"`
	// Stuck counts the pair lanes (sender, receiver, lane) stuck at any
	// time during the run (see stuckReport).
	Stuck int `json:"stuck"`
}

func (s summary) line() string {
	return fmt.Sprintf("summary: nodes=%d writes=%d writes_failed=%d sent=%d delivered=%d failed=%d lost=%d stuck=%d",
		s.Nodes, s.Writes, s.WritesFailed, s.Sent, s.Delivered, s.Failed, s.Lost, s.Stuck)
}

// accountNodes fills the per-node part of r, and its summary, from nodes,
// which have all stopped (and the summary's stuck count from r.Stuck). In
// cluster mode nodes are the whole cluster, so the receiving side of each
// node's messages is counted too; in node mode there is one node and only
// its own side is known.
func accountNodes(r *report, nodes []*simNode, clusterMode bool) {
	stats := map[cluster.NodeID][]transport.Stats{}
	for _, n := range nodes {
		stats[n.id], _ = n.stats()
	}
	for _, n := range nodes {
		n.mu.Lock()
		nr := nodeReport{ID: string(n.id), Restarts: n.restarts, Slow: n.slow > 0,
			StoreKeys: n.store.Len(), StoreBytes: n.store.Bytes()}
		n.mu.Unlock()
		if clusterMode {
			late := n.ledger.servedLate.Load()
			nr.ServedLate = &late
		}
		totals := totalsOf(stats[n.id], false)

		// What the peers received from n, and the failure responses n sent
		// that they saw (they share the urgent lane with gossip).
		var delivered, peerDropped [routing.NumLanes]uint64
		var peerDroppedBy [routing.NumLanes][transport.NumReasons]uint64
		if clusterMode {
			for _, peer := range nodes {
				if peer == n {
					continue
				}
				if in := inboundFrom(stats[peer.id])[n.id]; in != nil {
					for lane := range in {
						delivered[lane] += in[lane].received
						for reason, count := range in[lane].droppedInbound {
							peerDropped[lane] += count
							peerDroppedBy[lane][reason] += count
						}
					}
				}
			}
		}

		for _, lane := range routing.Lanes {
			t := &totals[lane]
			lr := laneReport{Lane: lane.String(), Written: t.sent, Failed: t.droppedTotal(),
				FailedBy: map[string]uint64{}, Bytes: t.bytes, SocketWrites: t.writes, Connects: t.connects,
				Received: t.received, Paused: t.throttled, PausedMs: ms(t.throttledTime)}
			lr.Sent = lr.Written + lr.Failed
			for reason, count := range t.dropped {
				if count > 0 {
					lr.FailedBy[transport.Reason(reason).String()] = count
				}
			}
			if t.writes > 0 {
				lr.MsgsPerWrite = float64(t.sent) / float64(t.writes)
			}
			if clusterMode {
				lr.Delivered, lr.PeerDropped = &delivered[lane], &peerDropped[lane]
				lr.PeerDroppedBy = map[string]uint64{}
				for reason, count := range peerDroppedBy[lane] {
					if count > 0 {
						lr.PeerDroppedBy[transport.Reason(reason).String()] = count
					}
				}
			}
			h := n.ledger.latency[lane].snapshot()
			lr.Latency = h.percentiles()
			nr.Lanes = append(nr.Lanes, lr)
		}

		wl := n.ledger.writeLatency.snapshot()
		nr.Writes = writeReport{Started: n.ledger.writesStarted.Load(), OK: n.ledger.writesOK.Load(),
			Failed: n.ledger.writesFailed.total(), FailedBy: n.ledger.writesFailed.byName(),
			Skipped: n.ledger.writesSkipped.Load(), Latency: wl.percentiles()}

		// Requests: every Request call was counted before it was made and
		// after it returned, so Lost is those that never returned.
		counts := n.requestCounts()
		nr.Requests = account{Sent: counts.Requests + n.ledger.otherRequests.Load(),
			Delivered: counts.Acked + n.ledger.otherAcked.Load(),
			Failed:    counts.Failed + n.ledger.otherFailed.total(),
			FailedBy:  n.ledger.requestsFailed.byName()}
		for reason, count := range n.ledger.otherFailed.byName() {
			nr.Requests.FailedBy[reason] += count
		}
		nr.Requests.Lost = int64(nr.Requests.Sent) - int64(nr.Requests.Delivered) - int64(nr.Requests.Failed)

		// Gossip: every Send call either failed at once, or was accepted;
		// an accepted digest is then written (the urgent lane's
		// MessagesSent, less the responses — failure responses — that
		// travelled there too) or dropped (OnDropped). Lost is what is
		// neither.
		written := totals[routing.Urgent].sent - totals[routing.Urgent].responses
		nr.Gossip = account{Sent: n.ledger.gossipSends.Load(), Delivered: written,
			Failed:   n.ledger.gossipRejected.total() + n.ledger.gossipDropped.total(),
			FailedBy: n.ledger.gossipRejected.byName()}
		for reason, count := range n.ledger.gossipDropped.byName() {
			nr.Gossip.FailedBy[reason] += count
		}
		nr.Gossip.Lost = int64(nr.Gossip.Sent) - int64(nr.Gossip.Delivered) - int64(nr.Gossip.Failed)

		r.PerNode = append(r.PerNode, nr)
		r.Summary.Nodes++
		r.Summary.Writes += nr.Writes.Started
		r.Summary.WritesFailed += nr.Writes.Failed
		for _, a := range []account{nr.Requests, nr.Gossip} {
			r.Summary.Sent += a.Sent
			r.Summary.Delivered += a.Delivered
			r.Summary.Failed += a.Failed
			// A negative lost is messages counted in two outcomes: as wrong
			// as one with none, and it must not cancel another's loss.
			r.Summary.Lost += max(a.Lost, -a.Lost)
		}
	}
	if clusterMode {
		r.Summary.Lost += int64(checkFlights(r, nodes, stats))
	}
	if r.Stuck != nil {
		r.Summary.Stuck = len(r.Stuck.Pairs)
	}
	r.SummaryLine = r.Summary.line()
}

// writeText prints the report for people: to fit consoleWidth (the free
// text is wrapped by the caller's wrapWriter, the tables are laid out for
// it), or wide, every table row on one line.
func (r *report) writeText(w io.Writer, wide bool) {
	fmt.Fprintf(w, "\n%s: %d node(s), workload %.1f s, then %.1f s finishing what was in flight and closing; "+
		"%d writes/s per node, values ~%d B (2%% of 96 KiB-1 MiB), coalescing %s%s\n",
		r.Mode, r.Nodes, r.WorkloadS, r.DrainS, r.Rate, r.ValueSize, r.Strategy, map[bool]string{true: ", mutual TLS"}[r.TLS])
	if wide && len(r.Faults) > 0 {
		fmt.Fprintf(w, "faults: %s\n", strings.Join(r.Faults, "; "))
	} else {
		for _, fault := range r.Faults {
			fmt.Fprintf(w, "fault: %s\n", fault)
		}
	}
	if rec := r.Recovery; rec != nil && rec.RestartedAt > 0 {
		fmt.Fprintf(w, "recovery: %s restarted at %.1f s; first write acked by it %s later; its new generation gossiped to %d/%d peers %s\n",
			rec.Node, rec.RestartedAt, after(rec.FirstAckAfter), rec.SeenBy, rec.Peers, within(rec.GossipSeenAfter))
		if b := rec.Bootstrap; b != nil && b.Error == "" {
			fmt.Fprintf(w, "bootstrap: %s pulled %s of data files from %s with SendFile and applied %d writes of its keys in %s ms\n",
				rec.Node, bytesIEC(uint64(b.FileBytes)), listNames(b.From), b.Applied, millis(b.TookMs))
		} else if b != nil {
			fmt.Fprintf(w, "bootstrap: %s failed: %s\n", rec.Node, strings.ReplaceAll(b.Error, "\n", "; "))
		}
	}
	// The table is 96 columns wide; its last column, the failure reasons,
	// follows it on the wide form's rows and comes under it otherwise.
	const row = "%-5s %-6s %7v %7v %9v %9v %6v %10v %7v %7v %7v %6v"
	fmt.Fprintf(w, row, "node", "lane", "sent", "written", "delivered", "peer-drop", "failed", "msgs/write", "MiB",
		"p50 ms", "p99 ms", "paused")
	if wide {
		fmt.Fprint(w, "  failed by reason")
	}
	fmt.Fprintln(w)
	var why []string
	for _, n := range r.PerNode {
		name := n.ID
		for _, l := range n.Lanes {
			delivered, peerDropped, reasonsText := "-", "-", reasons(l.FailedBy)
			if l.Delivered != nil {
				delivered, peerDropped = fmt.Sprint(*l.Delivered), fmt.Sprint(*l.PeerDropped)
			}
			if len(l.PeerDroppedBy) > 0 {
				reasonsText = strings.TrimSpace(reasonsText + " peer: " + reasons(l.PeerDroppedBy))
			}
			fmt.Fprintf(w, row, name, l.Lane, l.Sent, l.Written, delivered, peerDropped, l.Failed,
				fmt.Sprintf("%.1f", l.MsgsPerWrite), fmt.Sprintf("%.1f", float64(l.Bytes)/(1<<20)),
				millis(l.Latency.P50), millis(l.Latency.P99), l.Paused)
			if wide {
				fmt.Fprintf(w, "  %s", reasonsText)
			} else if reasonsText != "" {
				why = append(why, fmt.Sprintf("  %-5s %-6s %s", n.ID, l.Lane, reasonsText))
			}
			fmt.Fprintln(w)
			name = ""
		}
	}
	if len(why) > 0 {
		fmt.Fprintln(w, "failed by reason (peer: received, then dropped by the peer):")
		for _, line := range why {
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintln(w)
	for _, n := range r.PerNode {
		fmt.Fprintf(w, "%-4s writes %d: ok %d (p50 %s ms, p99 %s ms), failed %d%s", n.ID, n.Writes.Started, n.Writes.OK,
			millis(n.Writes.Latency.P50), millis(n.Writes.Latency.P99), n.Writes.Failed, parenthesised(n.Writes.FailedBy))
		if n.Writes.Skipped > 0 {
			fmt.Fprintf(w, ", skipped %d", n.Writes.Skipped)
		}
		if n.ServedLate != nil && *n.ServedLate > 0 {
			fmt.Fprintf(w, "; handed %d replica writes after their requester gave up", *n.ServedLate)
		}
		if wide {
			fmt.Fprintf(w, "; requests %s; gossip %s\n", n.Requests.text("acked"), n.Gossip.text("written"))
			continue
		}
		fmt.Fprintf(w, "\n     requests %s\n     gossip %s\n", n.Requests.text("acked"), n.Gossip.text("written"))
	}
	r.Stuck.writeText(w)
	r.InFlight.writeText(w)
	for _, note := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", note)
	}
	fmt.Fprintln(w, r.SummaryLine)
}

func (a account) text(delivered string) string {
	return fmt.Sprintf("%d: %s %d, failed %d%s, lost %d", a.Sent, delivered, a.Delivered, a.Failed, parenthesised(a.FailedBy), a.Lost)
}

func reasons(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func parenthesised(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	return " (" + reasons(m) + ")"
}

func after(msValue float64) string {
	if msValue < 0 {
		return "(never)"
	}
	return fmt.Sprintf("%s ms", millis(msValue))
}

func within(msValue float64) string {
	if msValue < 0 {
		return "(not all)"
	}
	return fmt.Sprintf("within %s ms", millis(msValue))
}
