package transport

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/internode/internode/cluster"
)

// remove removes id and tells the watchers of its Leave, holding the
// lock throughout; locked is called once the lock is held.
func (m *notifyUnderLock) remove(id cluster.NodeID, locked func()) {
	m.lock <- struct{}{}
	defer func() { <-m.lock }()
	mb := m.members[id]
	delete(m.members, id)
	locked()
	for _, fn := range m.watchers {
		fn(cluster.Event{Type: cluster.Leave, Member: mb})
	}
}

// TestALeaveToldUnderTheMembershipsLockDoesNotDeadlockWithADial: a lane
// to n3 starts a dial, which asks the membership for n3's address
// (Lookup), as n3 leaves, and the membership tells its watchers of the
// Leave while it holds the lock its Lookup takes (which the transport
// allows: TestAJoinToldUnderTheMembershipsLockDoesNotDeadlockWithAnEntryBeingMade).
// membershipChanged stopped n3's entry and waited, inside the
// notification, for its writers to exit; the writer waited in Lookup for
// the lock the notification held. Neither returned: the membership, n3's
// lane, and every later membership change hung for good.
func TestALeaveToldUnderTheMembershipsLockDoesNotDeadlockWithADial(t *testing.T) {
	members := newNotifyUnderLock(cluster.Member{ID: "n3", Addr: "127.0.0.1:1"})
	n1 := startNode(t, "n1", members, nil)

	var fired atomic.Bool
	lookingUp := make(chan struct{})
	locked := make(chan struct{})
	members.onLookup = func(id cluster.NodeID) {
		buf := make([]byte, 64<<10)
		inDial := strings.Contains(string(buf[:runtime.Stack(buf, false)]), "(*outConn).dial")
		if id == "n3" && inDial && fired.CompareAndSwap(false, true) {
			close(lookingUp)
			<-locked // the Leave is being told: this Lookup waits for it
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n1.Send(ctx, "n3", 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lookingUp:
	case <-time.After(5 * time.Second):
		t.Fatal("setup: the lane did not dial")
	}
	left := make(chan struct{})
	go func() {
		defer close(left)
		members.remove("n3", func() { close(locked) })
	}()
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Error("deadlock: n3's Leave, told under the membership's lock, waits for n3's writer, which waits for that lock in Lookup")
		t.Logf("the Leave waits in peer.stop: %v; a Lookup waits for the lock in a dial: %v", blockedIn("chan receive", "transport.(*peer).stop"), blockedIn("select", "(*outConn).dial"))
		close(members.abort) // let the writer's Lookup go, and so the Leave
		<-left
	}
}
