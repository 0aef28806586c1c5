package memberlist

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestLeaveWithoutLimitReturnsOnceNoMemberIsLeftToTell: the whole cluster
// shuts down at once, each node calling Leave without a limit, then
// Close. memberlist waits for its broadcast to be gossiped only if it
// knows another live member when the wait begins; the other node then
// left meanwhile, memberlist gossips to no member that left, and its wait
// never ended: Leave blocked for good, and Close, which waits for a
// running Leave, with it.
func TestLeaveWithoutLimitReturnsOnceNoMemberIsLeftToTell(t *testing.T) {
	var nodes []*Membership
	for _, id := range []cluster.NodeID{"n1", "n2"} {
		var seeds []string
		if len(nodes) > 0 {
			seeds = []string{nodes[0].GossipAddr()}
		}
		m, err := Join(Config{
			NodeID: id, TransportAddr: transportAddr(id), BindAddr: "127.0.0.1:0",
			Seeds: seeds, Tune: quickGossip, Logger: testLogger(),
		})
		require.NoError(t, err)
		nodes = append(nodes, m)
	}
	for _, m := range nodes {
		waitMembers(t, m, member("n1"), member("n2"))
	}

	done := make(chan error, len(nodes))
	for _, m := range nodes {
		go func() { done <- m.Leave(0) }()
	}
	timeout := time.After(waitLimit)
	for range nodes {
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-timeout:
			// Close would wait for the blocked Leave: the nodes are
			// left running, and TestMain reports their goroutines.
			t.Fatalf("Leave(0) still blocked after %v, though every other member has left", waitLimit)
		}
	}
	for _, m := range nodes {
		require.NoError(t, m.Close())
	}
}
