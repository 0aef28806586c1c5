package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/cluster/memberlist"
	"github.com/internode/internode/routing"
)

// runNode runs one node of the workload (-mode node): it joins the others
// through memberlist, runs for -duration and reports on itself.
func runNode(ctx context.Context, o options, out, logs io.Writer) (*report, error) {
	start := time.Now()
	id := cluster.NodeID(o.id)
	mlConfig := memberlist.DefaultConfig()
	mlConfig.NodeID = id
	mlConfig.TransportAddr = o.listen
	if o.gossip != "" {
		mlConfig.BindAddr = o.gossip
	}
	for _, seed := range strings.Split(o.join, ",") {
		if seed = strings.TrimSpace(seed); seed != "" {
			mlConfig.Seeds = append(mlConfig.Seeds, seed)
		}
	}
	if o.verbose {
		mlConfig.Logger = log.New(logs, "memberlist: ", log.LstdFlags)
	}
	ml, err := memberlist.Join(mlConfig)
	if err != nil {
		return nil, fmt.Errorf("joining the cluster: %w", err)
	}
	defer ml.Close()
	metrics, err := startMetrics(o.metrics, out)
	if err != nil {
		return nil, err
	}
	defer metrics.close()

	var ca *clusterCA
	if o.tls {
		if ca, err = loadOrCreateCA(o.tlsDir); err != nil {
			return nil, fmt.Errorf("-tls-dir: %w", err)
		}
	}
	w := &world{metrics: metrics, ca: ca,
		opts: o, clusterName: clusterName, members: departuresHidden{ml}, start: start,
		// Gossip with, and replicate to, the members memberlist sees alive.
		liveIDs: func() []cluster.NodeID { return memberIDs(ml.Members()) },
		// Replicate only to the members that have gossiped to this node: a
		// peer whose memberlist does not know this node yet could handle a
		// request but not address the response (its transport fails it
		// with unknown_peer) and the request would time out.
		replicaIDs: func(heardFrom func(cluster.NodeID) bool) []cluster.NodeID {
			var ids []cluster.NodeID
			for _, m := range ml.Members() {
				if m.ID == id || heardFrom(m.ID) {
					ids = append(ids, m.ID)
				}
			}
			return ids
		},
		logger: newLogger(o, logs),
		router: routing.NewRouter(routing.DefaultThreshold, nil),
	}
	n, err := newSimNode(w, id, o.listen)
	if err != nil {
		return nil, err
	}
	if err := n.start(0); err != nil {
		return nil, err
	}
	metrics.serveHealth(n.transportNow, out)
	metrics.serve()
	fmt.Fprintf(out, "node %s: transport on %s, gossip on %s, seeds %v; %d writes/s for %v\n",
		id, n.addr, ml.GossipAddr(), mlConfig.Seeds, o.rate, o.duration)
	prog := newProgress(out, []*simNode{n}, start, 1)
	prog.wide = o.wide
	prog.upText = func(int) string { return fmt.Sprintf("%d members", len(ml.Members())) }
	if !o.wide {
		prog.upText, prog.upLabel = func(int) string { return fmt.Sprint(len(ml.Members())) }, "members"
	}
	// Only this node's side of its pair lanes is known here: see main.go.
	alive := aliveSince{}
	prog.stuck = newStuckDetector(o.stuckAfter)
	prog.pairs = func(now time.Time, states []nodeState) []pairSample {
		alive.update(now, memberIDs(ml.Members()))
		return nodePairSamples(states[0], alive, now, startGrace)
	}
	stopWatch := ml.Watch(func(ev cluster.Event) {
		if ev.Member.ID != id {
			prog.event(ev.Member.ID, "%s (%s)", ev.Type, ev.Member.Addr)
		}
	})

	workStart := time.Now()
	workCtx, stopWork := context.WithTimeout(ctx, o.duration)
	defer stopWork()
	// The workload ends when workCtx does; the faults and the writes
	// still in flight may take a while longer.
	workStopped := make(chan time.Time, 1)
	context.AfterFunc(workCtx, func() { workStopped <- time.Now() })
	var loops, writes sync.WaitGroup
	loops.Go(func() { n.runWorkload(workCtx, o.seed^hashID(id), valuePool(o.seed, o.valueSize), &writes) })
	loops.Go(func() { prog.run(workCtx) })
	loops.Wait()
	workEnd := <-workStopped

	prog.event(id, "workload stopped; waiting for writes in flight, then leaving")
	writes.Wait()
	drainCtx, cancel := context.WithTimeout(context.Background(), 2*o.timeout+5*time.Second)
	n.drain(drainCtx)
	cancel()
	// Leave first, so that the others stop choosing this node; then let
	// the transport write what it still holds, and close it.
	if err := ml.Leave(2 * time.Second); err != nil {
		prog.event(id, "leave: %v", err)
	}
	n.stop(true)
	stopWatch()
	end := time.Now()

	r := &report{Mode: "node", Nodes: 1, DurationS: o.duration.Seconds(), Rate: o.rate,
		ValueSize: o.valueSize, Strategy: o.strategy, TimeoutMs: ms(o.timeout), TLS: o.tls,
		ElapsedS: end.Sub(start).Seconds(), WorkloadS: workEnd.Sub(workStart).Seconds(),
		DrainS: end.Sub(workEnd).Seconds(), Series: prog.allSamples(), Events: prog.allEvents(),
		Stuck: prog.stuck.report(start, startGrace)}
	accountNodes(r, []*simNode{n}, false)
	r.Notes = append(r.Notes,
		"node mode: delivered counts what this node can know: requests acknowledged and gossip digests written to their socket",
		"node mode: stuck judges this node's outbound pair lanes from its own side: messages it holds for a peer that it does not write, or requests that all fail",
		"node mode: the urgent lane's count assumes this node sent no failure response (its handlers never fail; the transport pauses rather than rejects)")
	return r, nil
}

// departuresHidden is the membership the node's transport sees: memberlist's,
// without Leave events: the transport keeps a departed peer as a member,
// and goes on dialling it, as it does a member that failed. The workload
// stops choosing a departed peer by itself (it asks memberlist for the live members); what was queued for it
// expires or fails, and is counted.
type departuresHidden struct{ cluster.Membership }

func (m departuresHidden) Watch(fn func(cluster.Event)) (stop func()) {
	return m.Membership.Watch(func(ev cluster.Event) {
		if ev.Type != cluster.Leave {
			fn(ev)
		}
	})
}

func hashID(id cluster.NodeID) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * 1099511628211
	}
	return h
}
