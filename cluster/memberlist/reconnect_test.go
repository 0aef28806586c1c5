package memberlist

import (
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// These tests run the reconnect loop in a synctest bubble, with a fake join
// instead of memberlist and fake time: which members are remembered, which
// are forgotten and which addresses each round tries are exact
// observations, independent of the machine's speed.

// fakeJoins stands in for memberlist's Join: it records the addresses tried
// and fails for those in fail.
type fakeJoins struct {
	mu    sync.Mutex
	tried []string
	fail  map[string]bool
	block chan struct{} // if set, each join waits for it
}

func (f *fakeJoins) join(addr string) error {
	f.mu.Lock()
	f.tried = append(f.tried, addr)
	fail := f.fail[addr]
	block := f.block
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if fail {
		return errors.New("connection refused")
	}
	return nil
}

// takeTried returns and clears the addresses tried so far.
func (f *fakeJoins) takeTried() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tried := f.tried
	f.tried = nil
	return tried
}

func (f *fakeJoins) setFail(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = make(map[string]bool)
	for _, a := range addrs {
		f.fail[a] = true
	}
}

// reconnectBubble returns a Membership named "self" without memberlist,
// whose reconnect loop runs with cfg (defaults applied) and joins through
// the returned fake; alone tells the loop whether this node is alone. It
// must be called inside a synctest bubble.
func reconnectBubble(t *testing.T, cfg Config, alone *atomic.Bool) (*Membership, *delegate, *fakeJoins) {
	m := newMembership(log.New(io.Discard, "", 0), "127.0.0.1:7000")
	m.self = "self"
	m.rc = newReconnector(cfg.withDefaults())
	joins := &fakeJoins{}
	m.rc.join = joins.join
	m.rc.alone = alone.Load
	m.rc.intn = func(int) int { return 0 }
	m.startReconnecting()
	t.Cleanup(func() {
		m.stopReconnecting()
		m.waitReconnecting()
	})
	return m, (*delegate)(m), joins
}

// gossipNode returns memberlist's view of internode node id, gossiping on
// 127.0.0.1:port.
func gossipNode(id string, port uint16) *ml.Node {
	return &ml.Node{
		Name: id, Addr: net.IPv4(127, 0, 0, 1), Port: port,
		Meta: encodeMeta(transportAddr(cluster.NodeID(id))),
	}
}

// leavingNode is gossipNode after it called Leave.
func leavingNode(id string, port uint16) *ml.Node {
	n := gossipNode(id, port)
	n.Meta = encodeLeavingMeta(transportAddr(cluster.NodeID(id)))
	return n
}

// remembered returns the failed members m remembers and their addresses.
func remembered(m *Membership) map[cluster.NodeID]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[cluster.NodeID]string)
	for id, f := range m.rc.failed {
		out[id] = f.addr
	}
	return out
}

func TestReconnectRemembersOnlyFailedMembersSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		m, d, joins := reconnectBubble(t, Config{ReconnectInterval: time.Second}, &alone)
		foreign := &ml.Node{Name: "foreign", Addr: net.IPv4(127, 0, 0, 1), Port: 7950, Meta: []byte("role=cache")}
		for _, n := range []*ml.Node{
			gossipNode("n1", 7941), gossipNode("n2", 7942), gossipNode("self", 7940), foreign,
		} {
			d.NotifyJoin(n)
		}
		assert.Empty(t, remembered(m))

		d.NotifyLeave(gossipNode("n1", 7941))  // declared dead
		d.NotifyLeave(leavingNode("n2", 7942)) // left gracefully
		d.NotifyLeave(gossipNode("self", 7940))
		d.NotifyLeave(foreign) // not an internode member
		assert.Equal(t, map[cluster.NodeID]string{"n1": "127.0.0.1:7941"}, remembered(m))

		time.Sleep(time.Second) // the first round
		synctest.Wait()
		assert.Equal(t, []string{"127.0.0.1:7941"}, joins.takeTried())

		// A successful join does not prove that n1 is back (it may still
		// have to refute its death); only memberlist's Join does.
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"127.0.0.1:7941"}, joins.takeTried())

		d.NotifyJoin(gossipNode("n1", 7941))
		assert.Empty(t, remembered(m), "forgotten when alive again")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		assert.Empty(t, joins.takeTried(), "nothing to do")

		// Restarted on a new gossip port, then failed again: remembered
		// at its latest address.
		d.NotifyJoin(gossipNode("n1", 7951))
		d.NotifyLeave(gossipNode("n1", 7951))
		assert.Equal(t, map[cluster.NodeID]string{"n1": "127.0.0.1:7951"}, remembered(m))
	})
}

func TestReconnectGivesUpAfterTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		m, d, joins := reconnectBubble(t, Config{ReconnectInterval: time.Second, ReconnectTimeout: 10 * time.Second}, &alone)
		joins.setFail("127.0.0.1:7941")
		d.NotifyJoin(gossipNode("n1", 7941))
		d.NotifyLeave(gossipNode("n1", 7941))

		time.Sleep(9 * time.Second)
		synctest.Wait()
		assert.Len(t, joins.takeTried(), 9, "one attempt a second")
		assert.Len(t, remembered(m), 1)

		time.Sleep(time.Second) // 10 s after the failure: forgotten before the round's attempt
		synctest.Wait()
		assert.Empty(t, joins.takeTried())
		assert.Empty(t, remembered(m))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Empty(t, joins.takeTried())
	})
}

func TestReconnectTriesSeedsWhenAloneSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		_, d, joins := reconnectBubble(t, Config{
			ReconnectInterval: time.Second,
			Seeds:             []string{"seed1:7946", "seed2:7946"},
		}, &alone)

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Empty(t, joins.takeTried(), "not alone, nothing failed: nothing to do")

		alone.Store(true)
		joins.setFail("seed1:7946")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"seed1:7946", "seed2:7946"}, joins.takeTried(), "until one answers")

		d.NotifyJoin(gossipNode("n1", 7941))
		d.NotifyLeave(gossipNode("n1", 7941))
		joins.setFail("seed1:7946", "seed2:7946", "127.0.0.1:7941")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"seed1:7946", "seed2:7946", "127.0.0.1:7941"}, joins.takeTried(),
			"seeds first, then a failed member")

		alone.Store(false)
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"127.0.0.1:7941"}, joins.takeTried(), "no seeds once not alone")
	})
}

func TestReconnectPicksOneFailedMemberPerRoundSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		m, d, joins := reconnectBubble(t, Config{ReconnectInterval: time.Second}, &alone)
		var picks []int // the n intn was asked for; read after synctest.Wait
		var pickMu sync.Mutex
		next := 0
		m.rc.intn = func(n int) int { // a rotating "random" choice
			pickMu.Lock()
			defer pickMu.Unlock()
			picks = append(picks, n)
			next++
			return (next - 1) % n
		}
		for i, id := range []string{"n3", "n1", "n2"} {
			port := uint16(7941 + i)
			d.NotifyJoin(gossipNode(id, port))
			d.NotifyLeave(gossipNode(id, port))
		}
		joins.setFail("127.0.0.1:7941", "127.0.0.1:7942", "127.0.0.1:7943")

		time.Sleep(4 * time.Second)
		synctest.Wait()
		// Sorted by ID (n1: 7942, n2: 7943, n3: 7941), indexed by intn.
		assert.Equal(t, []string{"127.0.0.1:7942", "127.0.0.1:7943", "127.0.0.1:7941", "127.0.0.1:7942"}, joins.takeTried())
		pickMu.Lock()
		assert.Equal(t, []int{3, 3, 3, 3}, picks)
		pickMu.Unlock()
		assert.Equal(t, []cluster.NodeID{"n1", "n2", "n3"}, slices.Sorted(maps.Keys(remembered(m))),
			"failed attempts forget nothing")
	})
}

// TestReconnectStopWaitsForAttemptSynctest checks that stopping the loop
// (as Leave and Close do) ends it, and that waiting for it (as Close does)
// waits for a join in progress and no longer.
func TestReconnectStopWaitsForAttemptSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		m, d, joins := reconnectBubble(t, Config{ReconnectInterval: time.Second}, &alone)
		release := make(chan struct{})
		joins.block = release
		d.NotifyJoin(gossipNode("n1", 7941))
		d.NotifyLeave(gossipNode("n1", 7941))

		time.Sleep(time.Second)
		synctest.Wait() // the loop is blocked in join
		m.stopReconnecting()
		waited := make(chan struct{})
		go func() {
			defer close(waited)
			m.waitReconnecting()
		}()
		synctest.Wait()
		select {
		case <-waited:
			t.Fatal("waitReconnecting returned during a join")
		default:
		}
		close(release)
		<-waited
		m.stopReconnecting() // safe twice

		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, []string{"127.0.0.1:7941"}, joins.takeTried(), "no round after stop")
	})
}

func TestReconnectDisabledSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		alone.Store(true)
		m, d, joins := reconnectBubble(t, Config{ReconnectInterval: -1, Seeds: []string{"seed:7946"}}, &alone)
		require.False(t, m.rc.started, "no goroutine")
		d.NotifyJoin(gossipNode("n1", 7941))
		d.NotifyLeave(gossipNode("n1", 7941))
		assert.Empty(t, remembered(m))
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Empty(t, joins.takeTried())
		m.stopReconnecting()
		m.waitReconnecting() // returns at once
	})
}

// TestRestartBeforeTheCrashIsDetected: a node that crashed (Close without
// Leave) and restarts under its ID at a new gossip and transport address
// before the others have declared the old process dead — a pod restarted
// at once on a new IP, with memberlist's LAN failure detection taking
// seconds. The seed refuses the new address while the old process still
// looks alive ("Conflicting address"), and once it declares the old one
// dead it gossips that only to the old address: nothing tells it about the
// new process until memberlist's periodic push/pull (PushPullInterval, 30 s
// on a LAN; it took 53 s here with the defaults). Meanwhile the restarted
// node's Join has returned, and the transports of the others refuse it
// (ErrUnknownPeer, RefusedUnknownNode). The push/pull interval is raised
// here so that the test does not depend on where its timer happens to be.
func TestRestartBeforeTheCrashIsDetected(t *testing.T) {
	tune := func(c *ml.Config) {
		fastFailureDetection(c)
		c.PushPullInterval = time.Hour
	}
	join := func(id cluster.NodeID, addr string, seeds ...string) *Membership {
		m, err := Join(Config{
			NodeID: id, TransportAddr: addr, BindAddr: "127.0.0.1:0", Seeds: seeds,
			ReconnectInterval: 100 * time.Millisecond, Tune: tune, Logger: testLogger(),
		})
		require.NoError(t, err)
		return m
	}
	n1 := join("n1", transportAddr("n1"))
	defer func() { assert.NoError(t, n1.Close()) }()
	seen := watch(t, n1)
	old := join("n2", transportAddr("n2"), n1.GossipAddr())
	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n2")})
	require.NoError(t, old.Close()) // a crash: no Leave

	restarted := join("n2", "127.0.0.1:8002", n1.GossipAddr()) // before n1 notices
	defer func() { assert.NoError(t, restarted.Close()) }()
	seen.waitEvent(t, cluster.Event{Type: cluster.Leave, Member: member("n2")})
	back := cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}
	require.Eventually(t, func() bool {
		got, ok := n1.Lookup("n2")
		return ok && got == back
	}, 5*time.Second, 10*time.Millisecond,
		"n1 does not take the restarted n2 back once it has declared the old one dead; n1 has %v", n1.Members())
}

// TestReconnectSeedThatIsThisNode: every node is often given the same seed
// list, in which it finds itself under a name (a host name, another of its
// IPs) that Join cannot recognise. A join through that seed succeeds, alone:
// a round that stopped at that "success" never tried the next seed, so a
// node that found itself alone (here n1, once n2 has left and is forgotten,
// before n3 starts at n2's address without seeds) stayed alone for good.
func TestReconnectSeedThatIsThisNode(t *testing.T) {
	ports := freePorts(t, 2)
	p1, p2 := ports[0], ports[1]
	n2, err := Join(Config{
		NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: fmt.Sprintf("127.0.0.1:%d", p2),
		ReconnectInterval: -1, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	n1, err := Join(Config{
		NodeID: "n1", TransportAddr: transportAddr("n1"), BindAddr: fmt.Sprintf("127.0.0.1:%d", p1),
		Seeds:             []string{fmt.Sprintf("localhost:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)},
		ReconnectInterval: 100 * time.Millisecond, ReconnectTimeout: 100 * time.Millisecond,
		Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, n1.Close()) }()
	waitMembers(t, n1, member("n1"), member("n2"))
	// n2 leaves gracefully: n1 does not remember it, and is alone.
	require.NoError(t, n2.Leave(waitLimit))
	require.NoError(t, n2.Close())
	waitMembers(t, n1, member("n1"))
	// Should n1 have taken the leave for a failure, it forgets n2 after
	// ReconnectTimeout: then only the seeds can bring n1 and n3 together.
	require.Eventually(t, func() bool {
		n1.mu.Lock()
		defer n1.mu.Unlock()
		return len(n1.rc.failed) == 0
	}, waitLimit, 10*time.Millisecond)

	n3, err := Join(Config{
		NodeID: "n3", TransportAddr: transportAddr("n3"), BindAddr: fmt.Sprintf("127.0.0.1:%d", p2),
		ReconnectInterval: -1, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, n3.Close()) }()

	// Only n1's reconnection rounds can bring the two together.
	waitMembers(t, n1, member("n1"), member("n3"))
	waitMembers(t, n3, member("n1"), member("n3"))
}

// TestReconnectTriesEveryAddressThatClaimedAFailedMemberSynctest: n2
// crashes and restarts at once at a new gossip address; this node, which
// still takes the old process for alive, hears the new one claim n2's ID
// (a conflict) and keeps the address, to join it once the old process is
// declared dead. Under churn, a late alive message about an earlier
// process of n2, at another address, gossiped by a member whose view was
// behind, is a conflict too. Only the last claim was kept: the restarted
// process, which had believed since its Join that it was a member, was
// never tried, and was taken only at memberlist's next push/pull (30 s on
// a LAN), the others' transports refusing it meanwhile (seen on loopback
// with real memberlist: n1 tried the dead addresses for 30 s).
func TestReconnectTriesEveryAddressThatClaimedAFailedMemberSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		_, d, joins := reconnectBubble(t, Config{ReconnectInterval: time.Second}, &alone)
		old := gossipNode("n2", 7942)
		d.NotifyJoin(old)
		d.NotifyConflict(old, gossipNode("n2", 7952)) // n2 restarted there
		d.NotifyConflict(old, gossipNode("n2", 7962)) // an earlier process's address, gossiped late
		d.NotifyLeave(old)                            // the old process declared dead
		joins.setFail("127.0.0.1:7942", "127.0.0.1:7962")

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Contains(t, joins.takeTried(), "127.0.0.1:7952", "the restarted process is tried")
	})
}

// TestReconnectKeepsTheClaimsOfAMemberBackAtAStaleAddressSynctest: as
// above, n2's restarted process claimed its ID while this node took the
// old one for alive; the old one is then declared dead. Before a
// reconnection round, a late alive message about an earlier process of
// n2 arrives: memberlist takes a dead node's new address at once
// (DeadNodeReclaimTime), so n2 is back, there, where nothing answers,
// and fails again. The restarted process's address, forgotten when n2
// came back, was never tried.
func TestReconnectKeepsTheClaimsOfAMemberBackAtAStaleAddressSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var alone atomic.Bool
		_, d, joins := reconnectBubble(t, Config{ReconnectInterval: time.Second}, &alone)
		old := gossipNode("n2", 7942)
		d.NotifyJoin(old)
		d.NotifyConflict(old, gossipNode("n2", 7952)) // n2 restarted there
		d.NotifyLeave(old)                            // the old process declared dead
		stale := gossipNode("n2", 7962)               // an earlier process's address, gossiped late
		d.NotifyJoin(stale)
		d.NotifyLeave(stale)
		joins.setFail("127.0.0.1:7942", "127.0.0.1:7962")

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Contains(t, joins.takeTried(), "127.0.0.1:7952", "the restarted process is tried")
	})
}
