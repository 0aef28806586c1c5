package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// clusterName is the ClusterName of every simulated node.
const clusterName = "simulator"

// runCluster runs -nodes nodes in this process on loopback, with the
// faults on, for -duration, and returns the report. Progress goes to out.
func runCluster(ctx context.Context, o options, out, logs io.Writer) (*report, error) {
	start := time.Now()
	metrics, err := startMetrics(o.metrics, out)
	if err != nil {
		return nil, err
	}
	defer metrics.close()
	var ca *clusterCA
	if o.tls {
		if ca, err = newCA(); err != nil {
			return nil, err
		}
	}
	plan := planFaults(o)
	members := cluster.NewStatic()
	w := &world{metrics: metrics, ca: ca,
		opts: o, clusterName: clusterName, members: members, start: start,
		liveIDs:  func() []cluster.NodeID { return memberIDs(members.Members()) },
		logger:   newLogger(o, logs),
		router:   routing.NewRouter(routing.DefaultThreshold, nil),
		recovery: plan.recovery(start),
	}
	var nodes []*simNode
	stopAll := func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() { n.stop(true) })
		}
		wg.Wait()
	}
	for i := range o.nodes {
		n, err := newSimNode(w, cluster.NodeID(fmt.Sprintf("n%d", i+1)), "127.0.0.1:0")
		if err != nil {
			stopAll()
			return nil, err
		}
		if i == plan.slowNode {
			n.slow, n.slowPerByte = o.slow, time.Millisecond/(64<<10)
		}
		if err := n.start(0); err != nil {
			stopAll()
			return nil, err
		}
		members.Add(cluster.Member{ID: n.id, Addr: n.addr})
		nodes = append(nodes, n)
	}
	metrics.serve()

	r := &report{Mode: "cluster", Nodes: o.nodes, DurationS: o.duration.Seconds(), Rate: o.rate,
		ValueSize: o.valueSize, Strategy: o.strategy, TimeoutMs: ms(o.timeout), TLS: o.tls,
		Faults: plan.describe(o, nodes)}
	fmt.Fprintf(out, "%d nodes on loopback for %v: gossip every %v to 3 peers (urgent lane), %d writes/s per node replicated to 3 with quorum 2 (small and large lanes)\n",
		o.nodes, o.duration, 100*time.Millisecond, o.rate)
	prog := newProgress(out, nodes, start, o.nodes)
	prog.wide = o.wide
	prog.stuck = newStuckDetector(o.stuckAfter)
	prog.pairs = func(now time.Time, states []nodeState) []pairSample {
		return clusterPairSamples(states, now, startGrace)
	}

	workStart := time.Now()
	workCtx, stopWork := context.WithTimeout(ctx, o.duration)
	defer stopWork()
	// The workload ends when workCtx does; the faults and the writes
	// still in flight may take a while longer.
	workStopped := make(chan time.Time, 1)
	context.AfterFunc(workCtx, func() { workStopped <- time.Now() })
	var loops, writes, gossiping sync.WaitGroup
	pool := valuePool(o.seed, o.valueSize)
	// The gossip goes on after the writes stop, until the pair lanes have
	// been judged (settle below): without messages to move, a wedged
	// lane cannot show.
	gossipCtx, stopGossip := context.WithCancel(ctx)
	defer stopGossip()
	for i, n := range nodes {
		gossiping.Go(func() { n.gossipLoop(gossipCtx) })
		if o.rate > 0 {
			loops.Go(func() {
				n.writeLoop(workCtx, rand.New(rand.NewPCG(o.seed+uint64(i), 0x5eed)), pool, &writes)
			})
		}
	}
	loops.Go(func() { prog.run(workCtx) })
	plan.run(workCtx, &loops, w.recovery, prog, nodes)
	loops.Wait()
	workEnd := <-workStopped

	// Let every write started reach its outcome, then every replica
	// request (bounded by -timeout), then close the transports gracefully:
	// queued gossip is written or fails, and the counters are final.
	prog.event("", "writes stopped; waiting for writes in flight, judging the pair lanes (gossip goes on), then closing the nodes")
	writes.Wait()
	drainCtx, cancel := context.WithTimeout(context.Background(), 2*o.timeout+5*time.Second)
	for _, n := range nodes {
		n.drain(drainCtx)
	}
	cancel()
	// Judge every pair lane for long enough to find it stuck, before
	// closing the nodes ends what a wedged one holds, with probes on the
	// lanes the gossip does not use; then let the last gossip and probes
	// be written or fail.
	for _, n := range nodes {
		gossiping.Go(func() { n.probeLoop(gossipCtx, probeInterval) })
	}
	still, pairLanes := prog.settle(startGrace + o.stuckAfter + 2*time.Second)
	stopGossip()
	gossiping.Wait()
	if !quiesce(nodes, 3*time.Second) {
		r.InFlight = &flightReport{} // not checked: something may have been on the wire
	}
	stopAll()

	end := time.Now()
	r.ElapsedS, r.WorkloadS, r.DrainS = end.Sub(start).Seconds(), workEnd.Sub(workStart).Seconds(), end.Sub(workEnd).Seconds()
	r.Series = prog.allSamples()
	r.Events = prog.allEvents()
	if w.recovery != nil {
		r.Recovery = w.recovery.report()
	}
	r.Stuck = prog.stuck.report(start, startGrace)
	r.Stuck.atEnd(still, pairLanes)
	accountNodes(r, nodes, true)
	return r, nil
}

// quiesce waits, at most max, until nothing is queued and the counters
// have stopped moving: the messages written have been read, so that
// closing the nodes does not cut off what was on the wire. It reports
// whether they stopped.
func quiesce(nodes []*simNode, max time.Duration) bool {
	deadline := time.Now().Add(max)
	var last [3]uint64
	for time.Now().Before(deadline) {
		s := takeSnapshot(nodes)
		var now [3]uint64
		for _, l := range s.lanes {
			now[0] += l.sent
			now[1] += l.received
			now[2] += l.pendingBytes
		}
		if now == last && now[2] == 0 {
			return true
		}
		last = now
		time.Sleep(20 * time.Millisecond) // polling counters: there is nothing to wait on
	}
	return false
}

func memberIDs(members []cluster.Member) []cluster.NodeID {
	ids := make([]cluster.NodeID, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	return ids
}

// newLogger returns the transports' logger: their connection events with
// -v, nothing otherwise (the report counts what matters).
func newLogger(o options, logs io.Writer) *slog.Logger {
	if !o.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
