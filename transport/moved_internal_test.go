package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestAddressChangeMovesAConnectedLane: n1's membership gives n2's old
// address, where a former n2 still listens, and a request to n2 goes
// there on a connected lane. The membership is then corrected (an Update
// with n2's new address). The next request went to the old address
// still: the Update only kicked lanes waiting to redial, and a connected
// lane kept writing where it was.
func TestAddressChangeMovesAConnectedLane(t *testing.T) {
	m1 := cluster.NewStatic()
	n1 := startNode(t, "n1", m1, nil)
	whoami := func(name string) HandlerFunc {
		return func(ctx context.Context, m *Message) ([]byte, error) { return []byte(name), nil }
	}
	knowsN1 := func() *cluster.Static { return cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()}) }
	n2 := startNode(t, "n2", knowsN1(), nil)
	n2.Handle(1, whoami("n2"))
	former := startNode(t, "n2", knowsN1(), nil)
	former.Handle(1, whoami("former n2"))

	m1.Add(cluster.Member{ID: "n2", Addr: former.Addr().String()}) // the old address
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := n1.Request(ctx, "n2", 1, nil)
	require.NoError(t, err)
	require.Equal(t, "former n2", string(got), "setup: the old address answers")

	m1.Add(cluster.Member{ID: "n2", Addr: n2.Addr().String()}) // Update: n2's address changes
	got, err = n1.Request(ctx, "n2", 1, nil)
	require.NoError(t, err)
	require.Equal(t, "n2", string(got), "a request to n2 after its address changed went to its old address")
}

// TestALeaveDuringAHandshakeLeavesNoServedConnection: n2 (a member)
// dials n1; n1's acceptor checks the Hello (n2 is a member) and then n2
// leaves, before the connection is claimed and tracked. The Leave found
// no connection to close; claimConn then made a stranger's entry for n2
// and the connection was served for as long as n2 used it, though n1
// accepts no unknown peers and n2 had left. Membership is now checked
// again once the connection can be found.
func TestALeaveDuringAHandshakeLeavesNoServedConnection(t *testing.T) {
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	members := &hookedMembership{Static: static}
	n1 := startNode(t, "n1", members, nil) // AcceptUnknownPeers off
	n1.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return []byte("served"), nil }))
	n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()}), nil)

	left := make(chan struct{})
	// n1's first Lookup of n2 is its acceptor's membership check.
	members.arm("n2", func() { static.Remove("n2"); close(left) })
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := n2.Request(ctx, "n1", 1, nil)
		first <- err
	}()
	<-left
	<-first // whatever became of the request in flight

	// n2 left n1's membership before this request was sent.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := n2.Request(ctx, "n1", 1, nil)
	require.Error(t, err, "n1 served %q to n2, which left its membership before the request and is no stranger it accepts", resp)
}

// TestDepartedCountsKeepTheirName: n2 leaves n1's membership
// after n1 sent it a message (n2's Stats count 1). It then connects to n1
// while n1 does not know it (AcceptUnknownPeers: a stranger's entry), and
// its next Join and Leave reach n1 merged, as cluster/memberlist delivers
// them to a watcher that is behind: a Leave only. addDeparted folded the
// departed member entry into the stranger's entry and kept that one,
// labelled StrangersPeer: n2's counters went back to nothing.
func TestDepartedCountsKeepTheirName(t *testing.T) {
	m2 := cluster.NewStatic()
	n2 := startNode(t, "n2", m2, nil)
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return nil, nil }))
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
	members := deferredWatch{&hookedMembership{Static: static}}
	n1 := startNode(t, "n1", members, func(c *Config) { c.Security.AcceptUnknownPeers = true })
	n1.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return nil, nil }))
	m2.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
	n2stats := func() (sent, received uint64) {
		for _, cs := range n1.Stats().Conns {
			if cs.Peer == "n2" {
				sent += cs.MessagesSent
				received += cs.MessagesReceived
			}
		}
		return sent, received
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n1.Request(ctx, "n2", 1, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool { s, _ := n2stats(); return s == 1 }, 5*time.Second, time.Millisecond)

	static.Remove("n2")
	n1.membershipChanged(cluster.Event{Type: cluster.Leave, Member: cluster.Member{ID: "n2"}})
	sent, _ := n2stats()
	require.Equal(t, uint64(1), sent, "a departed peer's counts stay")

	// n2 connects to n1 as a stranger.
	_, err = n2.Request(ctx, "n1", 1, nil)
	require.NoError(t, err)
	p := n1.peerStats("n2")
	require.NotNil(t, p)
	require.False(t, p.member.Load(), "a stranger's entry")
	strangersSent := func() (sent uint64) {
		for _, cs := range n1.Stats().Conns {
			if cs.Peer == StrangersPeer {
				sent += cs.MessagesSent
			}
		}
		return sent
	}
	require.Eventually(t, func() bool { return strangersSent() == 1 }, 5*time.Second, time.Millisecond, "the response counted, the stranger's")

	// n2 joins and leaves again; n1's watcher, behind, gets them merged:
	// one Leave.
	static.Add(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
	static.Remove("n2")
	n1.membershipChanged(cluster.Event{Type: cluster.Leave, Member: cluster.Member{ID: "n2", Addr: n2.Addr().String()}})
	sent, _ = n2stats()
	assert.Equal(t, uint64(1), sent, "n2's MessagesSent went back")
	assert.Equal(t, uint64(1), strangersSent(), "the strangers' MessagesSent moved")
}
