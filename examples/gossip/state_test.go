package gossip_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestEntryNewer(t *testing.T) {
	old := gossip.Entry{Generation: 1, Heartbeat: 900}
	require.True(t, gossip.Entry{Generation: 1, Heartbeat: 901}.Newer(old))
	require.False(t, old.Newer(old))
	// A restart's first heartbeat beats everything of the previous run.
	require.True(t, gossip.Entry{Generation: 2, Heartbeat: 0}.Newer(old))
	require.False(t, old.Newer(gossip.Entry{Generation: 2}))
}

func TestStateMergeKeepsTheNewer(t *testing.T) {
	s := gossip.NewState("n1", 10, t0)
	s.Beat(t0)
	updated := s.Merge(map[cluster.NodeID]gossip.Entry{
		"n1": {Generation: 9, Heartbeat: 99}, // about us: only we move it
		"n2": {Generation: 5, Heartbeat: 3},
	}, t0)
	require.Equal(t, 1, updated)
	require.Equal(t, map[cluster.NodeID]gossip.Entry{
		"n1": {Generation: 10, Heartbeat: 1},
		"n2": {Generation: 5, Heartbeat: 3},
	}, s.Entries())
	// A previous run of ours at a larger generation: we start one above it.
	require.Equal(t, 1, s.Merge(map[cluster.NodeID]gossip.Entry{"n1": {Generation: 99, Heartbeat: 99}}, t0))
	require.Equal(t, gossip.Entry{Generation: 100}, s.Entries()["n1"])
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n1": {Generation: 100}}, t0))

	// Older news changes nothing; newer news and a restart do.
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {Generation: 5, Heartbeat: 2}}, t0))
	require.Equal(t, 2, s.Merge(map[cluster.NodeID]gossip.Entry{
		"n2": {Generation: 6, Heartbeat: 0},
		"n3": {Generation: 1, Heartbeat: 1},
	}, t0))
	require.Equal(t, gossip.Entry{Generation: 6}, s.Entries()["n2"])
}

func TestStateStale(t *testing.T) {
	s := gossip.NewState("n1", 1, t0)
	s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {1, 1}, "n3": {1, 1}}, t0)
	s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {1, 2}}, t0.Add(time.Second))
	// n3 has not moved for 1.5 s, n2 for 0.5 s; this node is never stale.
	require.Equal(t, []cluster.NodeID{"n3"}, s.Stale(t0.Add(1500*time.Millisecond), time.Second))
	require.Empty(t, s.Stale(t0.Add(1500*time.Millisecond), 2*time.Second))
}

func TestStateForget(t *testing.T) {
	s := gossip.NewState("n1", 1, t0)
	s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {1, 1}, "n3": {1, 1}}, t0)
	s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {1, 2}}, t0.Add(time.Second))
	// n3 has stood still for 1.5 s: gone; n2 and this node stay.
	now := t0.Add(1500 * time.Millisecond)
	require.Equal(t, []cluster.NodeID{"n3"}, s.Forget(now, time.Second))
	require.Equal(t, map[cluster.NodeID]gossip.Entry{"n1": {1, 0}, "n2": {1, 2}}, s.Entries())
	require.Equal(t, []cluster.NodeID{"n2"}, s.Stale(now, 0), "a forgotten node is not reported stale")

	// For another second, n3's last entry (or an older one) is refused.
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n3": {1, 1}}, now))
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n3": {1, 0}}, now))
	require.Equal(t, 1, s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {1, 3}}, t0.Add(2*time.Second)))
	require.Empty(t, s.Forget(t0.Add(2500*time.Millisecond), time.Second))
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n3": {1, 0}}, t0.Add(2500*time.Millisecond)))
	// Then it is forgotten for good: whatever comes is new.
	require.Empty(t, s.Forget(t0.Add(2600*time.Millisecond), time.Second))
	require.Equal(t, 1, s.Merge(map[cluster.NodeID]gossip.Entry{"n3": {1, 1}}, t0.Add(2600*time.Millisecond)))

	// A newer entry is taken at once: the node restarted.
	require.Equal(t, []cluster.NodeID{"n2", "n3"}, s.Forget(t0.Add(4*time.Second), time.Second))
	require.Equal(t, 1, s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {2, 0}}, t0.Add(4*time.Second)))
	require.Equal(t, map[cluster.NodeID]gossip.Entry{"n1": {1, 0}, "n2": {2, 0}}, s.Entries())

	// A digest that still carries a forgotten node's last entry (an older
	// one does not) keeps it refused for another second.
	require.Equal(t, []cluster.NodeID{"n2"}, s.Forget(t0.Add(6*time.Second), time.Second))
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {2, 0}}, t0.Add(6800*time.Millisecond)))
	require.Empty(t, s.Forget(t0.Add(7500*time.Millisecond), time.Second))
	require.Zero(t, s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {2, 0}}, t0.Add(7500*time.Millisecond)))
	require.Empty(t, s.Forget(t0.Add(8600*time.Millisecond), time.Second))
	require.Equal(t, 1, s.Merge(map[cluster.NodeID]gossip.Entry{"n2": {2, 0}}, t0.Add(8600*time.Millisecond)))
}

func TestPickPeers(t *testing.T) {
	candidates := []cluster.NodeID{"n1", "n2", "n3", "n4", "n5", "n2"}
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[cluster.NodeID]int{}
	for range 4000 {
		peers := gossip.PickPeers(r, candidates, "n1", 3)
		require.Len(t, peers, 3)
		require.NotContains(t, peers, cluster.NodeID("n1"))
		seen := map[cluster.NodeID]bool{}
		for _, p := range peers {
			require.False(t, seen[p], "duplicate peer %s in %v", p, peers)
			seen[p] = true
			counts[p]++
		}
	}
	// Each of the 4 peers is picked 3/4 of the time (the duplicate n2
	// candidate does not count twice).
	for _, id := range []cluster.NodeID{"n2", "n3", "n4", "n5"} {
		require.InDelta(t, 3000, counts[id], 150, "peer %s", id)
	}
	require.Equal(t, []cluster.NodeID{"n1", "n2", "n3", "n4", "n5", "n2"}, candidates, "candidates untouched")

	require.Len(t, gossip.PickPeers(r, candidates, "n1", 10), 4, "capped by the peers there are")
	require.Empty(t, gossip.PickPeers(r, []cluster.NodeID{"n1"}, "n1", 3))

	// The same seed picks the same peers.
	a := gossip.PickPeers(rand.New(rand.NewPCG(7, 7)), candidates, "n1", 2)
	b := gossip.PickPeers(rand.New(rand.NewPCG(7, 7)), candidates, "n1", 2)
	require.Equal(t, a, b)
}

func TestDigestRoundTrip(t *testing.T) {
	entries := map[cluster.NodeID]gossip.Entry{
		"n1":         {Generation: 1735689600000000000, Heartbeat: 12},
		"n2":         {Generation: 1, Heartbeat: 0},
		"rack-b/n17": {Generation: 1 << 63, Heartbeat: 1<<64 - 1},
	}
	b := gossip.AppendDigest(nil, entries)
	got, err := gossip.DecodeDigest(b)
	require.NoError(t, err)
	require.Equal(t, entries, got)
	require.Equal(t, b, gossip.AppendDigest(nil, got), "equal tables encode equally")

	empty, err := gossip.DecodeDigest(gossip.AppendDigest(nil, nil))
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestDecodeDigestRejectsMalformed(t *testing.T) {
	valid := gossip.AppendDigest(nil, map[cluster.NodeID]gossip.Entry{"n1": {1, 2}})
	for name, b := range map[string][]byte{
		"empty":          nil,
		"wrong version":  {2, 0},
		"truncated":      valid[:len(valid)-1],
		"trailing bytes": append(append([]byte(nil), valid...), 0),
		"too many":       {1, 0xff, 0xff, 0x01}, // 32767 entries
		"empty node ID":  {1, 1, 0, 1, 1},
		"ID overruns":    {1, 1, 9, 'n', '1'},
	} {
		_, err := gossip.DecodeDigest(b)
		require.ErrorIs(t, err, gossip.ErrMalformed, name)
	}
}

func FuzzDecodeDigest(f *testing.F) {
	f.Add(gossip.AppendDigest(nil, map[cluster.NodeID]gossip.Entry{"n1": {1, 2}, "n2": {3, 4}}))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := gossip.DecodeDigest(b)
		if err != nil {
			return
		}
		again, err := gossip.DecodeDigest(gossip.AppendDigest(nil, entries))
		require.NoError(t, err)
		require.Equal(t, entries, again)
	})
}

// A table larger than the limit goes out in turns: each digest holds this
// node's entry and the next others in ID order, wrapping around.
func TestStateDigestTakesTurns(t *testing.T) {
	s := gossip.NewState("n0", 1, t0)
	s.Merge(map[cluster.NodeID]gossip.Entry{"n1": {1, 1}, "n2": {1, 2}, "n3": {1, 3}, "n4": {1, 4}, "n5": {1, 5}}, t0)
	self := gossip.Entry{Generation: 1}
	require.Equal(t, map[cluster.NodeID]gossip.Entry{"n0": self, "n1": {1, 1}, "n2": {1, 2}}, s.Digest(3))
	require.Equal(t, map[cluster.NodeID]gossip.Entry{"n0": self, "n3": {1, 3}, "n4": {1, 4}}, s.Digest(3))
	require.Equal(t, map[cluster.NodeID]gossip.Entry{"n0": self, "n5": {1, 5}, "n1": {1, 1}}, s.Digest(3))
	require.Len(t, s.Digest(6), 6, "a table that fits goes out whole")
}
