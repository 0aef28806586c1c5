package replication_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
)

func TestReplicas(t *testing.T) {
	members := []cluster.NodeID{"n1", "n2", "n3", "n4", "n5"}
	owned := map[cluster.NodeID]int{}
	for i := range 5000 {
		key := fmt.Sprintf("key-%d", i)
		r := replication.Replicas(key, members, 3)
		require.Len(t, r, 3)
		require.Len(t, slices.Compact(slices.Sorted(slices.Values(r))), 3, "distinct")
		// Order of members does not matter.
		reversed := slices.Clone(members)
		slices.Reverse(reversed)
		require.Equal(t, r, replication.Replicas(key, reversed, 3))
		for _, id := range r {
			owned[id]++
		}
	}
	for _, id := range members {
		require.InDelta(t, 3000, owned[id], 250, "%s owns 3/5 of the keys", id)
	}
	require.Len(t, replication.Replicas("k", members[:2], 3), 2)
	require.Empty(t, replication.Replicas("k", nil, 3))
}

// Adding a sixth node moves only the keys it wins: about 3/6 of them gain
// it as a replica, and no other replica changes.
func TestReplicasMoveLittle(t *testing.T) {
	five := []cluster.NodeID{"n1", "n2", "n3", "n4", "n5"}
	six := append(slices.Clone(five), "n6")
	moved := 0
	for i := range 3000 {
		key := fmt.Sprintf("key-%d", i)
		before, after := replication.Replicas(key, five, 3), replication.Replicas(key, six, 3)
		if slices.Contains(after, "n6") {
			moved++
			for _, id := range after {
				if id != "n6" {
					require.Contains(t, before, id)
				}
			}
		} else {
			require.Equal(t, before, after)
		}
	}
	require.InDelta(t, 1500, moved, 150)
}
