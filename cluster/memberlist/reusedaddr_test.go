package memberlist

import (
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestReconnectDoesNotMergeAnotherClusterAtAFailedMembersAddress: n2 of
// one cluster crashes; n1 remembers its gossip address to reconnect to it
// (for a day by default). A node of another cluster then starts at that
// address, as happens when addresses are reused (a new pod given the
// crashed one's IP, the same port 7946). n1's reconnection round joined
// that address, and the push/pull of the join merged the two clusters:
// each listed the other's nodes as members, for good. A failed member's
// address is now joined only once the node there answers to the
// member's name.
func TestReconnectDoesNotMergeAnotherClusterAtAFailedMembersAddress(t *testing.T) {
	ports := freePorts(t, 2)
	gossip := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	tune := func(c *ml.Config) {
		fastFailureDetection(c)
		// memberlist's own gossip to the dead n2 ends at once: only the
		// reconnection rounds reach n2's address afterwards.
		c.GossipToTheDeadTime = time.Millisecond
	}
	var n1Log lockedBuffer
	join := func(id cluster.NodeID, bind string, logs *log.Logger, seeds ...string) *Membership {
		t.Helper()
		m, err := Join(Config{NodeID: id, TransportAddr: transportAddr(id), BindAddr: bind, Seeds: seeds,
			Tune: tune, ReconnectInterval: 50 * time.Millisecond, Logger: logs})
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, m.Close()) })
		return m
	}
	n1 := join("n1", gossip(0), log.New(&n1Log, "", 0))
	n2 := join("n2", gossip(1), testLogger(), gossip(0))
	waitMembers(t, n1, member("n1"), member("n2"))
	require.NoError(t, n2.Close()) // a crash: n1 remembers n2 for reconnection
	waitMembers(t, n1, member("n1"))

	// Another cluster, n3 and n4, n4 at n2's gossip address.
	n3 := join("n3", "127.0.0.1:0", testLogger())
	n4 := join("n4", gossip(1), testLogger(), n3.GossipAddr())
	waitMembers(t, n4, member("n3"), member("n4"))

	// Two reconnection rounds of n1's reach n2's address once n4 is there.
	attempt := "failed member n2 at " + gossip(1)
	before := strings.Count(n1Log.String(), attempt)
	require.Eventually(t, func() bool { return strings.Count(n1Log.String(), attempt) >= before+2 },
		waitLimit, 10*time.Millisecond, "n1 tries n2's address")
	assert.Equal(t, []cluster.Member{member("n1")}, n1.Members(), "n1's cluster")
	assert.Equal(t, []cluster.Member{member("n3"), member("n4")}, n3.Members(), "the other cluster")
}
