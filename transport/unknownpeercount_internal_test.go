package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// TestUnknownPeerIsCountedWhereALaneMeetsIt: ReasonUnknownPeer is counted
// when a lane's dial finds no address for a peer that is not a member:
// a request's cancel, sent after the caller gave up (sendCancel, which
// does not require a member), to a node whose Leave was told meanwhile.
// The cancel is dropped once, as unknown_peer, under StrangersPeer, and
// stays counted once the janitor forgets the entry. A Send or Request to
// a node the membership does not know reaches no lane: it returns
// ErrUnknownPeer and counts nothing, as a message refused before a lane
// took it does.
func TestUnknownPeerIsCountedWhereALaneMeetsIt(t *testing.T) {
	n1 := startNode(t, "n1", cluster.NewStatic(), nil)

	err := n1.Send(context.Background(), "gone", 1, []byte("m"))
	require.ErrorIs(t, err, ErrUnknownPeer)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = n1.Request(ctx, "gone", 1, []byte("q"))
	require.ErrorIs(t, err, ErrUnknownPeer)
	assert.Zero(t, n1.Stats().Total().DroppedTotal(), "a message no lane took is counted")

	// The caller of a request to "gone" gave up after its Leave was told.
	n1.sendCancel("gone", 1, 42, monoDeadline(time.Now().Add(5*time.Second)))
	dropped := func() (unknown, total uint64) {
		for _, cs := range n1.Stats().Conns {
			if cs.Peer == StrangersPeer && cs.Lane == routing.Urgent {
				unknown += cs.Dropped[ReasonUnknownPeer]
			}
			total += cs.DroppedTotal()
		}
		return unknown, total
	}
	eventually(t, func() bool { unknown, _ := dropped(); return unknown == 1 }, "the cancel dropped as unknown_peer")
	eventually(t, func() bool { p := n1.peerStats("gone"); return p == nil || p.quiet() }, "the entry quiet")
	n1.forgetQuietStrangers() // the janitor
	assert.Nil(t, n1.peerStats("gone"), "the stranger's entry forgotten")
	unknown, total := dropped()
	assert.Equal(t, uint64(1), unknown, "the drop counted once, and kept")
	assert.Equal(t, uint64(1), total, "one outcome")
}
