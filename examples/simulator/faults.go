package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
)

// faultPlan is what goes wrong during a cluster-mode run, on by default in
// moderation (with 3 nodes or more, so that a quorum of 2 of 3 is always
// reachable):
//
//   - n2 has a slow disk (-slow): each write it stores takes a while, one
//     at a time, and a while into the run the disk stalls for seconds, so
//     its handlers stop and back-pressure builds;
//   - the last node (-restart) is stopped abruptly a third of the way
//     through, loses its data, restarts at the same address and
//     bootstraps from the other nodes but the slow one with SendFile.
type faultPlan struct {
	slowNode, restartNode   int // indexes into the nodes; -1: none
	stallAt, stall          time.Duration
	restartAt, restartAfter time.Duration
}

func planFaults(o options) faultPlan {
	p := faultPlan{slowNode: -1, restartNode: -1}
	if !o.faultsOn() {
		return p
	}
	if o.slow > 0 {
		p.slowNode = 1
		p.stallAt, p.stall = o.duration*3/5, min(max(o.duration/8, 500*time.Millisecond), 3*time.Second)
	}
	if o.restart {
		p.restartNode = o.nodes - 1
		p.restartAt, p.restartAfter = o.duration/3, min(max(o.duration/10, 500*time.Millisecond), 3*time.Second)
	}
	return p
}

// recovery returns the tracker of the restart, nil without one.
func (p faultPlan) recovery(start time.Time) *recovery {
	if p.restartNode < 0 {
		return nil
	}
	return &recovery{start: start}
}

func (p faultPlan) describe(o options, nodes []*simNode) []string {
	var faults []string
	if p.slowNode >= 0 {
		id := nodes[p.slowNode].id
		faults = append(faults,
			fmt.Sprintf("%s has a slow disk: each write it stores takes %v plus 1 ms per 64 KiB, one at a time", id, o.slow),
			fmt.Sprintf("%s's disk stalls for %v at %.1f s: its handlers stop, back-pressure builds", id, p.stall, p.stallAt.Seconds()))
	}
	if p.restartNode >= 0 {
		faults = append(faults, fmt.Sprintf("%s is stopped abruptly at %.1f s and restarted %v later at the same address, "+
			"its data lost: it bootstraps from the data files of %s, sent with SendFile",
			nodes[p.restartNode].id, p.restartAt.Seconds(), p.restartAfter, listIDs(p.bootstrapFrom(nodes))))
	}
	return faults
}

// run starts the faults, in goroutines of group, until ctx ends.
func (p faultPlan) run(ctx context.Context, group *sync.WaitGroup, rec *recovery, prog *progress, nodes []*simNode) {
	if p.slowNode >= 0 {
		slow := nodes[p.slowNode]
		group.Go(func() {
			if !sleepUntil(ctx, prog.start.Add(p.stallAt)) {
				return
			}
			prog.event(slow.id, "disk stalls for %v", p.stall)
			slow.stallDisk(ctx, p.stall)
			prog.event(slow.id, "disk back")
		})
	}
	if p.restartNode >= 0 {
		node := nodes[p.restartNode]
		from := p.bootstrapFrom(nodes)
		group.Go(func() {
			if !sleepUntil(ctx, prog.start.Add(p.restartAt)) {
				return
			}
			if err := restart(ctx, prog, rec, node, p.restartAfter, len(nodes)-1, from); err != nil {
				prog.event(node.id, "restart failed: %v", err)
			}
		})
	}
}

// bootstrapFrom returns the peers the restarted node bootstraps from:
// every other node but the slow one. A key's other two replicas can be
// any two of the other nodes, so a fixed pair of them leaves the keys
// whose copies are on the others (with 5 nodes, a sixth of those it owns)
// never pulled back; leaving out one node still leaves a copy of each.
func (p faultPlan) bootstrapFrom(nodes []*simNode) []cluster.NodeID {
	var from []cluster.NodeID
	for i, n := range nodes {
		if i != p.restartNode && i != p.slowNode {
			from = append(from, n.id)
		}
	}
	return from
}

// listIDs names nodes for people: "n1, n3 and n4".
func listIDs(ids []cluster.NodeID) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = string(id)
	}
	return listNames(names)
}

func listNames(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// sleepUntil waits until t, or ctx's end (then it returns false).
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// restart stops node abruptly, losing its data, starts it again down
// later, and bootstraps it from the nodes from. peers is how many other
// nodes should learn of its new generation.
func restart(ctx context.Context, prog *progress, rec *recovery, node *simNode, down time.Duration, peers int,
	from []cluster.NodeID) error {
	rec.stopped(node.id)
	node.stop(false)
	node.loseData()
	prog.event(node.id, "stopped abruptly, its data lost (restart fault)")
	sleepUntil(ctx, time.Now().Add(down)) // if the run ends meanwhile, restart at once
	generation := uint64(time.Now().UnixNano())
	rec.restarted(generation, peers)
	node.mu.Lock()
	node.restarts++
	node.mu.Unlock()
	if err := node.start(generation); err != nil {
		return err
	}
	prog.event(node.id, "restarted at %s, empty; bootstrapping from %s", node.addr, listIDs(from))

	// Pull what it owns from the peers' data files, sent with SendFile,
	// while it already takes new writes.
	bootCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	pulled, err := node.bootstrap(bootCtx, from)
	var bytes int64
	var applied int
	for _, p := range pulled {
		bytes += p.Bytes
		applied += p.Applied
	}
	rec.bootstrapped(from, bytes, applied, time.Since(start), err)
	if err != nil {
		prog.event(node.id, "bootstrap failed: %v", err)
		return nil
	}
	prog.event(node.id, "bootstrapped: %d writes of the keys it owns from %s of data files in %v",
		applied, bytesIEC(uint64(bytes)), time.Since(start).Round(time.Millisecond))
	return nil
}
