package gossip_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
)

// X departs at t0; its last heartbeat reaches A at once and P a second
// later, so P forgets X a second after A does. N starts just before P
// forgets X, and learns X from P as if it were news. Gossiping all-to-all
// every round, the three must not bring X back: by 3×ForgetAfter no table
// holds it (it used to circulate for ever, each node taking it again from
// another once its own memory of X's last entry had expired).
func TestDepartedNodeIsNotResurrectedByAJoiner(t *testing.T) {
	const forgetAfter = 10 * time.Second
	a, p := gossip.NewState("A", 1, t0), gossip.NewState("P", 1, t0)
	a.Merge(map[cluster.NodeID]gossip.Entry{"X": {1, 5}}, t0)
	p.Merge(map[cluster.NodeID]gossip.Entry{"X": {1, 5}}, t0.Add(time.Second))
	states := map[cluster.NodeID]*gossip.State{"A": a, "P": p}
	var holders []cluster.NodeID
	for now := t0; !now.After(t0.Add(10 * forgetAfter)); now = now.Add(100 * time.Millisecond) {
		if now.Equal(t0.Add(forgetAfter + 800*time.Millisecond)) {
			states["N"] = gossip.NewState("N", 1, now)
		}
		digests := map[cluster.NodeID]map[cluster.NodeID]gossip.Entry{}
		for id, s := range states {
			s.Forget(now, forgetAfter)
			s.Beat(now)
			digests[id] = s.Entries()
		}
		holders = holders[:0]
		for id, s := range states {
			for from, d := range digests {
				if from != id {
					s.Merge(d, now)
				}
			}
			if _, ok := s.Entries()["X"]; ok {
				holders = append(holders, id)
			}
		}
		if now.Sub(t0) > 3*forgetAfter {
			require.Empty(t, holders, "%v after X departed, X is back in the tables of", now.Sub(t0))
		}
	}
}
