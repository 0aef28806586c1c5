package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/routing"
)

// The restart fault's node loses its data and bootstraps: afterwards it
// must hold every key it owns, as the README says ("pulls it back"),
// whichever two of the other nodes hold each key's other copies.
func TestRestartedNodeGetsBackEveryKeyItOwns(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	members := cluster.NewStatic()
	w := &world{opts: o, clusterName: clusterName, members: members, start: time.Now(),
		liveIDs: func() []cluster.NodeID { return memberIDs(members.Members()) },
		logger:  slog.New(slog.DiscardHandler), router: routing.NewRouter(routing.DefaultThreshold, nil)}
	var nodes []*simNode
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop(false)
		}
	})
	for i := range o.nodes {
		n, err := newSimNode(w, cluster.NodeID(fmt.Sprintf("n%d", i+1)), "127.0.0.1:0")
		require.NoError(t, err)
		require.NoError(t, n.start(0))
		members.Add(cluster.Member{ID: n.id, Addr: n.addr})
		nodes = append(nodes, n)
	}
	plan := planFaults(o)
	require.GreaterOrEqual(t, plan.restartNode, 0)
	restarted := nodes[plan.restartNode]

	// Every key written to its three replicas, from the first node.
	ids := w.liveIDs()
	coord := nodes[0].incarnation().replicator
	for i := range 200 {
		require.NoError(t, coord.Write(t.Context(), ids, fmt.Sprintf("key-%d", i), []byte(fmt.Sprintf("value-%d", i))))
	}
	require.NoError(t, coord.Drain(t.Context()))

	rec := &recovery{start: time.Now()}
	prog := newProgress(io.Discard, nodes, time.Now(), len(nodes))
	require.NoError(t, restart(t.Context(), prog, rec, restarted, 0, len(nodes)-1, plan.bootstrapFrom(nodes)))
	require.Empty(t, rec.report().Bootstrap.Error)

	var missing []string
	for i := range 200 {
		key := fmt.Sprintf("key-%d", i)
		replicas := replication.Replicas(key, ids, replication.DefaultFactor)
		if !slices.Contains(replicas, restarted.id) {
			continue
		}
		restarted.mu.Lock()
		got, _, ok := restarted.store.Get(key)
		restarted.mu.Unlock()
		if !ok || !bytes.Equal(got, []byte(fmt.Sprintf("value-%d", i))) {
			missing = append(missing, fmt.Sprintf("%s (replicas %v)", key, replicas))
		}
	}
	require.Empty(t, missing, "%s bootstrapped from %v and lacks keys it owns", restarted.id, plan.bootstrapFrom(nodes))
}
