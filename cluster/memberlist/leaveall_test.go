package memberlist

import (
	"errors"
	"testing"
	"time"

	ml "github.com/hashicorp/memberlist"
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
	n1 := joinUnclosed(t, quickGossip, "n1")
	nodes := []*Membership{n1, joinUnclosed(t, quickGossip, "n2", n1.GossipAddr())}
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

// TestSetTransportAddrWithoutLimitReturnsWhenTheOnlyOtherMemberLeaves: a
// node moves its transport address, without a limit on the wait, just as
// the only other member leaves. memberlist waits for the update to be
// gossiped because that member was alive when the wait began, then
// gossips to no member that left: SetTransportAddr blocked for good, and
// Close with it. n1 gossips every 100 ms, so the four sends its update
// needs take longer than n2's leave (its flag, gossiped every 20 ms, then
// its leave message) takes to reach it.
func TestSetTransportAddrWithoutLimitReturnsWhenTheOnlyOtherMemberLeaves(t *testing.T) {
	slowGossip := func(c *ml.Config) { c.GossipInterval = 100 * time.Millisecond }
	n1 := joinUnclosed(t, slowGossip, "n1")
	n2 := joinUnclosed(t, quickGossip, "n2", n1.GossipAddr())
	waitMembers(t, n1, member("n1"), member("n2"))
	waitMembers(t, n2, member("n1"), member("n2"))

	left := make(chan error, 1)
	go func() { // as a node shutting down: Leave, then Close
		err := n2.Leave(waitLimit)
		left <- errors.Join(err, n2.Close())
	}()
	moved := make(chan error, 1)
	go func() { moved <- n1.SetTransportAddr("127.0.0.1:8011", 0) }()
	require.NoError(t, <-left)
	select {
	case err := <-moved:
		assert.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatalf("SetTransportAddr(addr, 0) still blocked after %v, though the only other member has left", waitLimit)
	}
	require.NoError(t, n1.Close())
}

// TestBroadcastTimeoutWhileAnotherMemberIsAlive: a wait too short for one
// gossip round, with another member alive that could still hear the
// change, is ErrBroadcastTimeout, for SetTransportAddr and for Leave; the
// change still applies locally.
func TestBroadcastTimeoutWhileAnotherMemberIsAlive(t *testing.T) {
	n1 := startNode(t, "n1")
	n2 := startNode(t, "n2", n1.GossipAddr())
	waitMembers(t, n1, member("n1"), member("n2"))

	assert.ErrorIs(t, n1.SetTransportAddr("127.0.0.1:8021", time.Nanosecond), ErrBroadcastTimeout)
	waitMembers(t, n2, cluster.Member{ID: "n1", Addr: "127.0.0.1:8021"}, member("n2"))
	assert.ErrorIs(t, n1.Leave(time.Nanosecond), ErrBroadcastTimeout)
}

// joinUnclosed joins a node as startNodeTuned does but leaves closing it
// to the test: a cleanup's Close would wait behind a Leave or
// SetTransportAddr that never returns, hanging the test instead of
// failing it.
func joinUnclosed(t *testing.T, tune func(*ml.Config), id cluster.NodeID, seeds ...string) *Membership {
	t.Helper()
	m, err := Join(Config{
		NodeID: id, TransportAddr: transportAddr(id), BindAddr: "127.0.0.1:0",
		Seeds: seeds, Tune: tune, Logger: testLogger(),
	})
	require.NoError(t, err)
	return m
}
