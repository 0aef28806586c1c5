package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestNodesThatLeaveWithNewIDsLeaveBoundedState: every node that leaves
// keeps a departed entry (addDeparted), so that Stats keeps its counts.
// A cluster whose nodes take a new ID at each start (pods) leaves one
// more entry at each restart, each holding the peer's lanes, counters and
// histograms (about 6.5 KB measured after traffic both ways), for as long
// as the transport runs. The departed entries of nodes that have not come
// back are now bounded (maxDepartedIDs); what the dropped ones counted
// stays in Stats' totals, and a node that left and came back keeps its
// name and counts.
func TestNodesThatLeaveWithNewIDsLeaveBoundedState(t *testing.T) {
	static1 := cluster.NewStatic()
	n1 := startNode(t, "n1", static1, nil)
	echo := HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil })
	n1.Handle(1, echo)
	n1m := cluster.Member{ID: "n1", Addr: n1.Addr().String()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sentTo := func(id cluster.NodeID) (sent uint64) {
		for _, cs := range n1.Stats().Conns {
			if cs.Peer == id {
				sent += cs.MessagesSent
			}
		}
		return sent
	}

	// n2 keeps its ID: it leaves and comes back.
	n2 := startNode(t, "n2", cluster.NewStatic(n1m), nil)
	n2.Handle(1, echo)
	n2m := cluster.Member{ID: "n2", Addr: n2.Addr().String()}
	static1.Add(n2m)
	_, err := n1.Request(ctx, "n2", 1, []byte("ping"))
	require.NoError(t, err)
	static1.Remove("n2")
	static1.Add(n2m)
	_, err = n1.Request(ctx, "n2", 1, []byte("ping"))
	require.NoError(t, err)
	// A write is counted once done: its response may come first.
	eventually(t, func() bool { return sentTo("n2") == 2 }, "both requests to n2 counted")

	// Pods: each exchanges messages with n1 both ways, stops and leaves.
	var pods []*peer
	for i := range 3 {
		id := cluster.NodeID(fmt.Sprintf("pod-%d", i))
		pod := startNode(t, id, cluster.NewStatic(n1m), nil)
		pod.Handle(1, echo)
		static1.Add(cluster.Member{ID: id, Addr: pod.Addr().String()})
		_, err := n1.Request(ctx, id, 1, []byte("ping"))
		require.NoError(t, err)
		_, err = pod.Request(ctx, "n1", 1, []byte("ping"))
		require.NoError(t, err)
		p := n1.peerStats(id)
		require.NotNil(t, p)
		pods = append(pods, p)
		pod.Close()
		static1.Remove(id)
	}
	for _, p := range pods {
		eventually(t, p.quiet, "a pod's entry quiet")
	}
	// 2 to n2, a request and a response to each pod.
	eventually(t, func() bool { return n1.Stats().Total().MessagesSent == 2+3*2 }, "every message to a pod counted")
	before := n1.Stats().Total()

	// Many more nodes come and go, each under a new ID.
	for i := range maxDepartedIDs + 50 {
		id := cluster.NodeID(fmt.Sprintf("gone-%d", i))
		static1.Add(cluster.Member{ID: id, Addr: "127.0.0.1:1"})
		_, err := n1.peerFor(id, true)
		require.NoError(t, err)
		static1.Remove(id)
	}
	n1.forgetQuietStrangers() // the janitor

	n1.peersMu.RLock()
	departed := len(n1.departed)
	n1.peersMu.RUnlock()
	assert.LessOrEqual(t, departed, maxDepartedIDs+1, "departed entries kept (n2's besides those of nodes that did not come back)")
	after := n1.Stats().Total()
	assert.Equal(t, before.MessagesSent, after.MessagesSent, "what the departed nodes were sent stays counted")
	assert.Equal(t, before.MessagesReceived, after.MessagesReceived, "what they sent stays counted")
	assert.Equal(t, before.ResponsesSent, after.ResponsesSent)
	assert.Equal(t, uint64(3*2), sentTo(DepartedPeer), "the pods, the first to leave, counted under DepartedPeer")
	assert.Equal(t, uint64(2), sentTo("n2"), "a node that came back keeps its name and counts")
}
