package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestAMoveBackIsNotMissed: n2 moves from A to B and back to A (a node
// restarted twice, given its first address again), its events behind
// the membership's map. n1's lane, its connection to A broken, redialled
// B while the map said B. Both events are then told after the map says
// A again: latestAddr answers A for each, p.addr was A already, so
// neither calls moved, and the lane's connection to B, where n2 no
// longer is, stays: every later message goes to the old incarnation at
// B instead of n2 at A. Before 457e7f7 the event for A moved the lane.
func TestAMoveBackIsNotMissed(t *testing.T) {
	answer := func(tr *Transport, name string) {
		tr.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) {
			return []byte(name), nil
		}))
	}
	n1Entry := cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"})
	atA := startNode(t, "n2", n1Entry, nil)
	answer(atA, "A")
	addrA := atA.Addr().String()
	members := newLaggingMembership(cluster.Member{ID: "n2", Addr: addrA})
	n1 := startNode(t, "n1", members, func(c *Config) {
		c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Millisecond, 5*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n1.Request(ctx, "n2", 1, []byte("q"))
	require.NoError(t, err)
	require.Equal(t, "A", string(resp))

	// n2 moves to B: the map says B, the event is held.
	atB := startNode(t, "n2", n1Entry, nil)
	answer(atB, "B (old incarnation)")
	members.Add(cluster.Member{ID: "n2", Addr: atB.Addr().String()})
	atA.Close()
	eventually(t, func() bool {
		resp, err := n1.Request(ctx, "n2", 1, []byte("q"))
		return err == nil && string(resp) == "B (old incarnation)"
	}, "n1 reaches n2 at B")

	// n2 comes back at A: the map says A; both events are told now.
	atA2 := startNode(t, "n2", n1Entry, func(c *Config) { c.ListenAddr = addrA })
	answer(atA2, "A again")
	members.Add(cluster.Member{ID: "n2", Addr: addrA})
	members.flush()

	resp, err = n1.Request(ctx, "n2", 1, []byte("q"))
	require.NoError(t, err)
	assert.Equal(t, "A again", string(resp), "the membership says n2 is at A, its events all told")
}
