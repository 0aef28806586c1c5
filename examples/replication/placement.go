package replication

import (
	"hash/fnv"
	"slices"

	"github.com/internode/internode/cluster"
)

// Replicas returns the n members that own key (all of them if there are
// fewer), by rendezvous hashing: every member gets a score from a hash of
// (member, key) and the n highest win. The result depends only on the set
// of members, not their order; adding or removing one member moves only
// the keys it wins or loses.
func Replicas(key string, members []cluster.NodeID, n int) []cluster.NodeID {
	type scored struct {
		id    cluster.NodeID
		score uint64
	}
	all := make([]scored, 0, len(members))
	for _, id := range members {
		if slices.ContainsFunc(all, func(s scored) bool { return s.id == id }) {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(id))
		h.Write([]byte{0})
		h.Write([]byte(key))
		all = append(all, scored{id: id, score: mix(h.Sum64())})
	}
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return compareIDs(a.id, b.id)
	})
	out := make([]cluster.NodeID, 0, min(n, len(all)))
	for _, s := range all[:min(n, len(all))] {
		out = append(out, s.id)
	}
	return out
}

func compareIDs(a, b cluster.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mix is splitmix64's finalizer: FNV's low bits are weak for short keys
// that differ only at the end.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
