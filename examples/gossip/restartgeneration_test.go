package gossip_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
)

// A node's generation is, by default, its start time. A replacement of a
// node (same ID, restarted, perhaps on another machine) whose clock is
// behind its predecessor's starts a smaller generation; the others, still
// remembering the predecessor's larger one, must see it alive all the same
// rather than take it for dead until they have forgotten it.
func TestGossipRestartWithClockBehind(t *testing.T) {
	ids := []cluster.NodeID{"n1", "n2", "n3"}
	l := newLoopback(t, len(ids))
	gens := map[cluster.NodeID]uint64{"n1": 1, "n2": 1, "n3": 1}
	l.converge(ids, func() bool { return l.knows(ids, gens) })

	// n3 restarts with the default generation, its start time.
	_, err := l.cluster.Restart(2)
	require.NoError(t, err)
	gens["n3"] = l.attachWithClock(2, 0, l.clock).g.Generation()
	l.converge(ids, func() bool { return l.knows(ids, gens) })
	predecessor := gens["n3"]

	// Its replacement's clock is an hour behind.
	_, err = l.cluster.Restart(2)
	require.NoError(t, err)
	replacement := l.attachWithClock(2, 0, func() time.Time { return l.clock().Add(-time.Hour) })
	require.Less(t, replacement.g.Generation(), predecessor)

	alive := func() bool {
		self := must(replacement.g.Known("n3"))
		for _, a := range ids {
			e, ok := l.nodes[a].g.Known("n3")
			if !ok || e.Generation != self.Generation || e.Heartbeat == 0 || len(l.nodes[a].g.Stale(500*time.Millisecond)) != 0 {
				return false
			}
		}
		return true
	}
	restarted := l.clock()
	l.converge(ids, func() bool { return alive() || l.clock().Sub(restarted) > 10*time.Second })
	views := map[cluster.NodeID]gossip.Entry{}
	for _, a := range ids {
		views[a], _ = l.nodes[a].g.Known("n3")
	}
	require.True(t, alive(), "after %v the others still take the replacement n3 for dead; n3 as each node sees it: %v",
		l.clock().Sub(restarted), views)
	require.Greater(t, must(replacement.g.Known("n3")).Generation, predecessor)
	require.Equal(t, must(replacement.g.Known("n3")).Generation, replacement.g.Generation())
}

// The same, when the replacement starts after the others have forgotten
// its predecessor: its smaller generation is a new run, not old news of
// the departed one, and is taken at once.
func TestStateTakesARestartWithASmallerGenerationAfterForgetting(t *testing.T) {
	const forgetAfter = 10 * time.Second
	s := gossip.NewState("n1", 1, t0)
	s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {Generation: 200, Heartbeat: 50}}, t0)
	now := t0.Add(forgetAfter + time.Second)
	require.Equal(t, []cluster.NodeID{"n2"}, s.Forget(now, forgetAfter))

	// n2 restarts with its clock behind: generation 100. None of n1's
	// digests mentions n2 any more, so n2 cannot learn of generation 200.
	for beat := uint64(1); beat <= 3; beat++ {
		now = now.Add(100 * time.Millisecond)
		s.Forget(now, forgetAfter)
		s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {Generation: 100, Heartbeat: beat}}, now)
	}
	e, ok := s.Entries()["n2"]
	require.True(t, ok, "the restarted n2 is refused as old news of its predecessor")
	require.Equal(t, gossip.Entry{Generation: 100, Heartbeat: 3}, e)

	// Old news of the predecessor's run is still refused.
	s2 := gossip.NewState("n1", 1, t0)
	s2.Merge(map[cluster.NodeID]gossip.Entry{"n2": {Generation: 200, Heartbeat: 50}}, t0)
	s2.Forget(t0.Add(forgetAfter+time.Second), forgetAfter)
	require.Zero(t, s2.Merge(map[cluster.NodeID]gossip.Entry{"n2": {Generation: 200, Heartbeat: 49}}, t0.Add(forgetAfter+time.Second)))
}
