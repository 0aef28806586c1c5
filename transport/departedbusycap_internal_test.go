package transport

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestADepartedNodeStillHandlingIsNotFoldedUntilQuiet: capDeparted folds
// the departed entries of the nodes that left first into DepartedPeer once
// more than maxDepartedIDs nodes have left, but only those that are quiet.
// A pod that left while n1 still runs a handler for its request keeps its
// entry under its own ID for as long as the handler runs, though it is the
// first to leave and more than maxDepartedIDs others leave after it:
// folded then, the handler's response, written or dropped once it
// returns, would be counted on an entry Stats no longer lists, and lost.
// Once the handler returns and the entry is quiet, the janitor folds it,
// and the response is counted exactly once.
func TestADepartedNodeStillHandlingIsNotFoldedUntilQuiet(t *testing.T) {
	static1 := cluster.NewStatic()
	n1 := startNode(t, "n1", static1, nil)
	n1m := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseHandler := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseHandler) // before n1's Close, which waits for its handlers
	n1.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		started <- struct{}{}
		<-release // the pod's leaving does not end it
		return m.Payload, nil
	}))

	const podID cluster.NodeID = "pod-busy"
	pod := startNode(t, podID, cluster.NewStatic(n1m), nil)
	static1.Add(cluster.Member{ID: podID, Addr: pod.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	asked := make(chan error, 1)
	go func() {
		_, err := pod.Request(ctx, "n1", 1, []byte("ping"))
		asked <- err
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the pod's request never reached n1's handler")
	}
	p := n1.peerStats(podID)
	require.NotNil(t, p)
	pod.Close()
	<-asked // the pod gave up with its Close
	static1.Remove(podID)
	require.False(t, p.quiet(), "n1 still runs the pod's handler")

	// What n1 counted for messages it sent (written or dropped) and received.
	type totals struct{ out, received uint64 }
	count := func(match func(cluster.NodeID) bool) (c totals) {
		for _, cs := range n1.Stats().Conns {
			if !match(cs.Peer) {
				continue
			}
			c.out += cs.MessagesSent
			for _, d := range cs.Dropped {
				c.out += d
			}
			c.received += cs.MessagesReceived
		}
		return c
	}
	all := func(cluster.NodeID) bool { return true }
	podOrFolded := func(id cluster.NodeID) bool { return id == podID || id == DepartedPeer }
	listed := func(id cluster.NodeID) bool {
		for _, cs := range n1.Stats().Conns {
			if cs.Peer == id {
				return true
			}
		}
		return false
	}
	before := count(all)
	require.Equal(t, totals{0, 1}, count(podOrFolded), "the pod's request received, nothing sent to it yet")

	// More than maxDepartedIDs nodes leave after the pod, each under a new ID.
	leave := func(id cluster.NodeID) {
		static1.Add(cluster.Member{ID: id, Addr: "127.0.0.1:1"})
		_, err := n1.peerFor(id, true)
		require.NoError(t, err)
		static1.Remove(id)
	}
	for i := range maxDepartedIDs + 50 {
		leave(cluster.NodeID(fmt.Sprintf("gone-%d", i)))
	}
	n1.forgetQuietStrangers() // the janitor
	assert.True(t, listed(podID), "the busy pod's entry listed under its own ID, not folded")
	assert.False(t, p.quiet(), "its handler still runs")

	// The handler returns: its response is written or dropped, and the
	// entry, quiet, the first of the maxDepartedIDs kept (the others were
	// folded as they left), is folded when one more node leaves.
	releaseHandler()
	eventually(t, p.quiet, "the pod's entry quiet once its handler returned")
	n1.forgetQuietStrangers()
	assert.True(t, listed(podID), "within the bound, the pod's entry is kept")
	leave("gone-last")
	n1.forgetQuietStrangers()
	n1.peersMu.RLock()
	departed := len(n1.departed)
	n1.peersMu.RUnlock()
	assert.LessOrEqual(t, departed, maxDepartedIDs, "departed entries kept")
	assert.False(t, listed(podID), "the pod's entry folded once quiet")
	assert.Equal(t, totals{1, 1}, count(podOrFolded), "the response counted once, under DepartedPeer")
	after := count(all)
	assert.Equal(t, before.out+1, after.out, "every message n1 sent counted once: none lost")
	assert.Equal(t, before.received, after.received, "what n1 received stays counted")
}
