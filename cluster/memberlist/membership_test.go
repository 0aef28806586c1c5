package memberlist

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/freeport"
)

// Every test gossips over real memberlist on 127.0.0.1 with ports picked by
// the kernel, or by freeport where a test must know one before Join; no
// other address is used.

var gossipLog = flag.Bool("gossip.log", false, "print memberlist's log lines")

// waitLimit bounds every wait for gossip. It only fails a test that is stuck;
// events normally arrive within a second.
const waitLimit = 10 * time.Second

// quickGossip spreads news faster than memberlist's LAN defaults (gossip
// every 20 ms instead of 200 ms) but keeps their failure detection (probe
// every 1 s, 500 ms timeout, suspicion of at least 4 s), so that a live
// member on a loaded test machine is not mistaken for a dead one.
func quickGossip(c *ml.Config) {
	c.GossipInterval = 20 * time.Millisecond
}

// fastFailureDetection also shrinks failure detection, so that a crashed
// member is declared dead in about a second: probe interval (200 ms) +
// probe timeout (100 ms) + suspicion (SuspicionMult x ProbeInterval =
// 400 ms; with fewer than SuspicionMult other members no confirmation is
// awaited). Only the test that crashes a member uses it.
func fastFailureDetection(c *ml.Config) {
	quickGossip(c)
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 2
}

func testLogger() *log.Logger {
	if *gossipLog {
		return log.New(os.Stderr, "", log.Lmicroseconds)
	}
	return log.New(io.Discard, "", 0)
}

func transportAddr(id cluster.NodeID) string {
	// Only a string in metadata: nothing listens there.
	return fmt.Sprintf("127.0.0.1:%d", 7000+int(id[len(id)-1]-'0'))
}

// startNode joins a node named id through seeds and closes it at the end of
// the test.
func startNode(t *testing.T, id cluster.NodeID, seeds ...string) *Membership {
	t.Helper()
	return startNodeTuned(t, quickGossip, id, seeds...)
}

func startNodeTuned(t *testing.T, tune func(*ml.Config), id cluster.NodeID, seeds ...string) *Membership {
	t.Helper()
	m, err := Join(Config{
		NodeID:        id,
		TransportAddr: transportAddr(id),
		BindAddr:      "127.0.0.1:0",
		Seeds:         seeds,
		Tune:          tune,
		Logger:        testLogger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, m.Close()) })
	return m
}

func member(id cluster.NodeID) cluster.Member {
	return cluster.Member{ID: id, Addr: transportAddr(id)}
}

// eventLog records the events a watcher receives and lets a test wait for
// them.
type eventLog struct {
	mu      sync.Mutex
	events  []cluster.Event
	changed chan struct{} // one slot: "events grew"
}

// watch records m's events until the end of the test.
func watch(t *testing.T, m *Membership) *eventLog {
	l := &eventLog{changed: make(chan struct{}, 1)}
	stop := m.Watch(l.record)
	t.Cleanup(stop)
	return l
}

func (l *eventLog) record(ev cluster.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *eventLog) get() []cluster.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// waitFor waits until the events recorded so far satisfy done, and returns
// them.
func (l *eventLog) waitFor(t *testing.T, what string, done func([]cluster.Event) bool) []cluster.Event {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		if events := l.get(); done(events) {
			return events
		}
		select {
		case <-l.changed:
		case <-timeout:
			t.Fatalf("no %s within %v; events: %v", what, waitLimit, l.get())
		}
	}
}

// waitEvent waits for ev.
func (l *eventLog) waitEvent(t *testing.T, ev cluster.Event) {
	t.Helper()
	l.waitFor(t, fmt.Sprintf("%v %s", ev.Type, ev.Member.ID), func(events []cluster.Event) bool {
		return slices.Contains(events, ev)
	})
}

// waitMembers waits until m lists exactly want.
func waitMembers(t *testing.T, m *Membership, want ...cluster.Member) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, m.Members())
	}, waitLimit, 10*time.Millisecond)
}

func TestJoinThroughSeed(t *testing.T) {
	n1 := startNode(t, "n1")
	seen := watch(t, n1)
	n2 := startNode(t, "n2", n1.GossipAddr())
	n3 := startNode(t, "n3", n1.GossipAddr())

	all := []cluster.Member{member("n1"), member("n2"), member("n3")}
	for _, m := range []*Membership{n1, n2, n3} {
		waitMembers(t, m, all...)
		for _, want := range all {
			got, ok := m.Lookup(want.ID)
			assert.True(t, ok)
			assert.Equal(t, want, got)
		}
		_, ok := m.Lookup("n4")
		assert.False(t, ok)
	}

	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n2")})
	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n3")})
	// Exactly one event per change and none for n1 itself, which joined
	// before Watch. The order may differ from the order of the Join calls: a
	// seed merges a joiner's state after answering it, so n3 can overtake n2.
	assert.ElementsMatch(t, []cluster.Event{
		{Type: cluster.Join, Member: member("n2")},
		{Type: cluster.Join, Member: member("n3")},
	}, seen.get())
}

func TestGossipAddr(t *testing.T) {
	n1 := startNode(t, "n1")
	host, port, err := net.SplitHostPort(n1.GossipAddr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.NotEqual(t, "0", port, "the port memberlist picked, not the requested 0")
}

func TestWatchSeesOwnJoinOnlyBeforeWatch(t *testing.T) {
	// A node's own Join happens inside Join, before anyone can Watch: a
	// watcher learns about the node from Members.
	n1 := startNode(t, "n1")
	assert.Equal(t, []cluster.Member{member("n1")}, n1.Members())
}

func TestGracefulLeave(t *testing.T) {
	n1 := startNode(t, "n1")
	n2 := startNode(t, "n2", n1.GossipAddr())
	n3 := startNode(t, "n3", n1.GossipAddr())
	for _, m := range []*Membership{n1, n2, n3} {
		waitMembers(t, m, member("n1"), member("n2"), member("n3"))
	}
	seen1, seen2, seen3 := watch(t, n1), watch(t, n2), watch(t, n3)

	start := time.Now()
	require.NoError(t, n3.Leave(waitLimit))
	left := cluster.Event{Type: cluster.Leave, Member: member("n3")}
	seen1.waitEvent(t, left)
	seen2.waitEvent(t, left)
	seen3.waitEvent(t, left) // the leaving node sees itself go
	t.Logf("graceful leave seen by both others after %v", time.Since(start))

	waitMembers(t, n1, member("n1"), member("n2"))
	waitMembers(t, n2, member("n1"), member("n2"))
	assert.NotContains(t, n3.Members(), member("n3"))
	// The leaving flag reached the others before memberlist's leave message:
	// they will not try to reconnect to n3.
	assert.Empty(t, remembered(n1))
	assert.Empty(t, remembered(n2))
	assert.NoError(t, n3.Leave(waitLimit), "second Leave")
	assert.ErrorIs(t, n3.SetTransportAddr("127.0.0.1:8003", waitLimit), ErrLeft)
}

func TestCrashDetected(t *testing.T) {
	n1 := startNodeTuned(t, fastFailureDetection, "n1")
	n2 := startNodeTuned(t, fastFailureDetection, "n2", n1.GossipAddr())
	n3 := startNodeTuned(t, fastFailureDetection, "n3", n1.GossipAddr())
	for _, m := range []*Membership{n1, n2, n3} {
		waitMembers(t, m, member("n1"), member("n2"), member("n3"))
	}
	seen1, seen2 := watch(t, n1), watch(t, n2)

	start := time.Now()
	require.NoError(t, n3.Close()) // no Leave: looks like a crash
	left := cluster.Event{Type: cluster.Leave, Member: member("n3")}
	seen1.waitEvent(t, left)
	seen2.waitEvent(t, left)
	t.Logf("crash detected by both others after %v", time.Since(start))

	waitMembers(t, n1, member("n1"), member("n2"))
	waitMembers(t, n2, member("n1"), member("n2"))
	// A crash is a failure: both remember n3 for reconnection.
	crashed := map[cluster.NodeID]string{"n3": n3.GossipAddr()}
	assert.Equal(t, crashed, remembered(n1))
	assert.Equal(t, crashed, remembered(n2))
}

func TestSetTransportAddr(t *testing.T) {
	n1 := startNode(t, "n1")
	n2 := startNode(t, "n2", n1.GossipAddr())
	n3 := startNode(t, "n3", n1.GossipAddr())
	for _, m := range []*Membership{n1, n2, n3} {
		waitMembers(t, m, member("n1"), member("n2"), member("n3"))
	}
	logs := []*eventLog{watch(t, n1), watch(t, n2), watch(t, n3)}

	moved := cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}
	require.NoError(t, n2.SetTransportAddr(moved.Addr, waitLimit))
	for i, l := range logs {
		l.waitEvent(t, cluster.Event{Type: cluster.Update, Member: moved})
		assert.Equal(t, []cluster.Event{{Type: cluster.Update, Member: moved}}, l.get(), "n%d", i+1)
	}
	for _, m := range []*Membership{n1, n2, n3} {
		got, ok := m.Lookup("n2")
		assert.True(t, ok)
		assert.Equal(t, moved, got)
	}

	assert.ErrorIs(t, n2.SetTransportAddr("127.0.0.1", waitLimit), ErrInvalidAddr)
	require.NoError(t, n2.SetTransportAddr(moved.Addr, waitLimit), "same address again")
	lookup, _ := n1.Lookup("n2")
	assert.Equal(t, moved, lookup)
}

func TestRestartUnderSameID(t *testing.T) {
	n1 := startNode(t, "n1")
	seen := watch(t, n1)
	old, err := Join(Config{
		NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: "127.0.0.1:0",
		Seeds: []string{n1.GossipAddr()}, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n2")})
	require.NoError(t, old.Leave(waitLimit))
	require.NoError(t, old.Close())

	// The new process binds a new gossip port and a new transport address.
	restarted, err := Join(Config{
		NodeID: "n2", TransportAddr: "127.0.0.1:8002", BindAddr: "127.0.0.1:0",
		Seeds: []string{n1.GossipAddr()}, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, restarted.Close()) }()
	back := cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}
	waitMembers(t, n1, member("n1"), back)
	events := seen.waitFor(t, "rejoin", func(events []cluster.Event) bool {
		return len(events) > 2 && events[len(events)-1] == cluster.Event{Type: cluster.Join, Member: back}
	})
	// The restarted node may flap once (Join, Leave, Join) before it
	// settles: it starts with a low incarnation number, so a retransmission
	// of the old process's leave message can still win until the new
	// process refutes it.
	assert.Equal(t, []cluster.Event{
		{Type: cluster.Join, Member: member("n2")},
		{Type: cluster.Leave, Member: member("n2")},
	}, events[:2])
	for _, ev := range events[2:] {
		assert.Equal(t, back, ev.Member, "every later event is about the new process")
	}
}

// TestQuickRestartAtTheSameGossipAddressIsNoLeave: a node that crashes
// and restarts under the same ID at the same gossip address before the
// others' failure detection declares it dead stays the same member: its
// new process refutes the old one's state with a higher incarnation, so
// no Leave is told, and a new transport address arrives as an Update.
// The package doc said such a restart appears as a Leave and a Join,
// which a database waiting for a Leave to learn of the restart would
// never see.
func TestQuickRestartAtTheSameGossipAddressIsNoLeave(t *testing.T) {
	n1 := startNode(t, "n1")
	seen := watch(t, n1)
	bind := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	old, err := Join(Config{
		NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: bind,
		Seeds: []string{n1.GossipAddr()}, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n2")})
	require.NoError(t, old.Close()) // a crash: no Leave

	restarted, err := Join(Config{
		NodeID: "n2", TransportAddr: "127.0.0.1:8002", BindAddr: bind,
		Seeds: []string{n1.GossipAddr()}, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, restarted.Close()) }()
	back := cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}
	events := seen.waitFor(t, "the restarted node's new address", func(events []cluster.Event) bool {
		return len(events) > 0 && events[len(events)-1].Member == back
	})
	assert.Equal(t, []cluster.Event{
		{Type: cluster.Join, Member: member("n2")},
		{Type: cluster.Update, Member: back},
	}, events, "a quick restart is told as an Update, no Leave")
}

// TestRestartAfterACrashOnANewAddress: a node that crashed (Close
// without Leave) and restarts under the same ID on a new gossip address
// (a new pod IP, or BindAddr port 0) was never taken back: memberlist
// refuses a known node's new address unless it left, or has been dead
// longer than DeadNodeReclaimTime, which was 0 (never). The restarted node
// listed the seed while the seed kept it unknown for good. It is now a
// Leave followed by a Join, as the package doc says.
func TestRestartAfterACrashOnANewAddress(t *testing.T) {
	n1 := startNodeTuned(t, fastFailureDetection, "n1")
	seen := watch(t, n1)
	old, err := Join(Config{
		NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: "127.0.0.1:0",
		Seeds: []string{n1.GossipAddr()}, Tune: fastFailureDetection, Logger: testLogger(),
	})
	require.NoError(t, err)
	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n2")})
	require.NoError(t, old.Close()) // a crash: no Leave
	seen.waitEvent(t, cluster.Event{Type: cluster.Leave, Member: member("n2")})

	restarted, err := Join(Config{
		NodeID: "n2", TransportAddr: "127.0.0.1:8002", BindAddr: "127.0.0.1:0",
		Seeds: []string{n1.GossipAddr()}, Tune: fastFailureDetection, Logger: testLogger(),
	})
	require.NoError(t, err, "the seed answers the restarted node")
	defer func() { assert.NoError(t, restarted.Close()) }()
	back := cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}
	waitMembers(t, restarted, member("n1"), back)
	require.Eventually(t, func() bool {
		got, ok := n1.Lookup("n2")
		return ok && got == back
	}, waitLimit, 10*time.Millisecond, "n1 never takes the restarted n2 back; n1 has %v", n1.Members())
}

// lockedBuffer is a log destination that tests can read while memberlist
// writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// foreignDelegate is a plain memberlist application whose metadata means
// nothing to internode.
type foreignDelegate struct{ meta []byte }

func (d foreignDelegate) NodeMeta(int) []byte                  { return d.meta }
func (foreignDelegate) NotifyMsg([]byte)                       {}
func (foreignDelegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (foreignDelegate) LocalState(bool) []byte                 { return nil }
func (foreignDelegate) MergeRemoteState(buf []byte, join bool) {}

func TestMalformedMetadataIgnored(t *testing.T) {
	var logged lockedBuffer
	n1, err := Join(Config{
		NodeID: "n1", TransportAddr: transportAddr("n1"), BindAddr: "127.0.0.1:0",
		Tune: quickGossip, Logger: log.New(&logged, "", 0),
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, n1.Close()) }()
	seen := watch(t, n1)

	// Two raw memberlist nodes join the same gossip: one with foreign
	// metadata, one with none.
	var foreign []*ml.Memberlist
	for _, d := range []ml.Delegate{foreignDelegate{meta: []byte("role=cache")}, nil} {
		conf := ml.DefaultLANConfig()
		quickGossip(conf)
		conf.Name = fmt.Sprintf("foreign-%d", len(foreign))
		conf.BindAddr, conf.BindPort, conf.AdvertisePort = "127.0.0.1", 0, 0
		conf.Delegate = d
		conf.Logger = testLogger()
		raw, err := ml.Create(conf)
		require.NoError(t, err)
		defer func() { assert.NoError(t, raw.Shutdown()) }()
		_, err = raw.Join([]string{n1.GossipAddr()})
		require.NoError(t, err)
		foreign = append(foreign, raw)
	}
	require.Eventually(t, func() bool { return n1.list.NumMembers() == 3 }, waitLimit, 10*time.Millisecond,
		"memberlist itself sees the foreign nodes")
	assert.Equal(t, []cluster.Member{member("n1")}, n1.Members())
	_, ok := n1.Lookup("foreign-0")
	assert.False(t, ok)
	require.Eventually(t, func() bool {
		s := logged.String()
		return strings.Contains(s, `ignoring node "foreign-0"`) && strings.Contains(s, `ignoring node "foreign-1"`)
	}, waitLimit, 10*time.Millisecond)

	// The foreign nodes leave again, unnoticed by watchers.
	for _, raw := range foreign {
		require.NoError(t, raw.Leave(waitLimit))
	}
	require.Eventually(t, func() bool { return n1.list.NumMembers() == 1 }, waitLimit, 10*time.Millisecond)

	// A real member joining now is the first and only event: the foreign
	// nodes produced none, neither joining nor leaving.
	n2 := startNode(t, "n2", n1.GossipAddr())
	seen.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n2")})
	assert.Equal(t, []cluster.Event{{Type: cluster.Join, Member: member("n2")}}, seen.get())
	waitMembers(t, n2, member("n1"), member("n2"))
}

func TestWatchStopWaitsForRunningCallback(t *testing.T) {
	n1 := startNode(t, "n1")
	entered := make(chan struct{})
	release := make(chan struct{})
	stopDone := make(chan struct{})
	var blockedCalls []cluster.Event // written by fn only; read after stop returned
	stopReturnedEarly := false
	stop := n1.Watch(func(ev cluster.Event) {
		blockedCalls = append(blockedCalls, ev)
		if len(blockedCalls) == 1 {
			close(entered)
			<-release
			select {
			case <-stopDone:
				stopReturnedEarly = true
			default:
			}
		}
	})
	t.Cleanup(stop)
	later := watch(t, n1)

	startNode(t, "n2", n1.GossipAddr())
	<-entered // the callback is running and cannot return until release

	// Memberlist is not blocked by the stuck watcher: n3 joins and n1 lists it.
	startNode(t, "n3", n1.GossipAddr())
	waitMembers(t, n1, member("n1"), member("n2"), member("n3"))

	go func() {
		defer close(stopDone)
		stop()
	}()
	select {
	case <-stopDone:
		t.Fatal("stop returned while the callback was running")
	default:
	}
	close(release)
	<-stopDone
	stop() // safe twice
	assert.False(t, stopReturnedEarly, "stop returned while the callback was running")

	// Once stop has returned, fn is never called again.
	startNode(t, "n4", n1.GossipAddr())
	later.waitEvent(t, cluster.Event{Type: cluster.Join, Member: member("n4")})
	require.NotEmpty(t, blockedCalls)
	assert.Equal(t, cluster.Event{Type: cluster.Join, Member: member("n2")}, blockedCalls[0])
	assert.NotContains(t, blockedCalls, cluster.Event{Type: cluster.Join, Member: member("n4")})
	assert.Equal(t, []cluster.Event{
		{Type: cluster.Join, Member: member("n2")},
		{Type: cluster.Join, Member: member("n3")},
		{Type: cluster.Join, Member: member("n4")},
	}, later.get())
}

func TestCloseAndUseAfterClose(t *testing.T) {
	n1 := startNode(t, "n1")
	n2, err := Join(Config{
		NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: "127.0.0.1:0",
		Seeds: []string{n1.GossipAddr()}, Tune: quickGossip, Logger: testLogger(),
	})
	require.NoError(t, err)
	waitMembers(t, n2, member("n1"), member("n2"))

	var calls int
	stopBefore := n2.Watch(func(cluster.Event) { calls++ })
	lastView := n2.Members()
	require.NoError(t, n2.Close())
	require.NoError(t, n2.Close(), "second Close")

	assert.ErrorIs(t, n2.Leave(time.Second), net.ErrClosed)
	assert.ErrorIs(t, n2.SetTransportAddr("127.0.0.1:8002", time.Second), net.ErrClosed)
	stop := n2.Watch(func(cluster.Event) { calls++ })
	stop()
	stopBefore()
	assert.NotEmpty(t, n2.GossipAddr())
	assert.Equal(t, lastView, n2.Members(), "the view is frozen")
	assert.Zero(t, calls)
}

func TestConcurrentCloses(t *testing.T) {
	n1, err := Join(Config{NodeID: "n1", TransportAddr: transportAddr("n1"), BindAddr: "127.0.0.1:0", Tune: quickGossip})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { assert.NoError(t, n1.Close()) })
		wg.Go(func() {
			err := n1.Leave(time.Second)
			if err != nil {
				assert.ErrorIs(t, err, net.ErrClosed)
			}
		})
	}
	wg.Wait()
}

// TestJoinThroughOnlyItself: seeds that are all this node, under its own
// GossipAddr or another name, start a new cluster, as no seeds do: a shared
// seed list lets the first node start alone.
func TestJoinThroughOnlyItself(t *testing.T) {
	port := freePorts(t, 1)[0]
	for _, seeds := range [][]string{
		{fmt.Sprintf("127.0.0.1:%d", port)},
		{fmt.Sprintf("localhost:%d", port), fmt.Sprintf("127.0.0.1:%d", port)},
	} {
		m, err := Join(Config{
			NodeID: "n1", TransportAddr: transportAddr("n1"), BindAddr: fmt.Sprintf("127.0.0.1:%d", port),
			Seeds: seeds, Tune: quickGossip, Logger: testLogger(),
		})
		require.NoError(t, err, "seeds %v", seeds)
		assert.Equal(t, []cluster.Member{member("n1")}, m.Members())
		require.NoError(t, m.Close())
	}
}

// freePorts returns n distinct ports free on 127.0.0.1 for TCP and UDP,
// for a test that must know a node's gossip address before Join: below
// the ephemeral range, where no other test's connection takes them
// meanwhile (see freeport).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := freeport.Loopback(n, true)
	require.NoError(t, err)
	return ports
}

func TestJoinFailures(t *testing.T) {
	t.Run("no seed answers", func(t *testing.T) {
		// Port 1 on loopback: nothing listens, the dial is refused at once.
		m, err := Join(Config{
			NodeID: "n1", TransportAddr: transportAddr("n1"), BindAddr: "127.0.0.1:0",
			Seeds: []string{"127.0.0.1:1"}, Tune: quickGossip,
		})
		assert.Nil(t, m)
		require.Error(t, err)
		assert.False(t, errors.Is(err, ErrInvalidConfig))
	})
	t.Run("only this node answers", func(t *testing.T) {
		// The first seed is this node under another name; the second does
		// not answer. memberlist counts the first as a node contacted, but
		// this node joined nothing: it is alone.
		port := freePorts(t, 1)[0]
		m, err := Join(Config{
			NodeID: "n1", TransportAddr: transportAddr("n1"), BindAddr: fmt.Sprintf("127.0.0.1:%d", port),
			Seeds: []string{fmt.Sprintf("localhost:%d", port), "127.0.0.1:1"}, Tune: quickGossip,
		})
		if m != nil {
			assert.NoError(t, m.Close())
		}
		require.Error(t, err, "Join reports success with no other node contacted")
		assert.Nil(t, m)
		assert.False(t, errors.Is(err, ErrInvalidConfig))
		assert.ErrorContains(t, err, "only this node answered")
	})
	t.Run("gossip port in use", func(t *testing.T) {
		n1 := startNode(t, "n1")
		m, err := Join(Config{NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: n1.GossipAddr()})
		assert.Nil(t, m)
		require.Error(t, err)
	})
}

// TestBindUnspecifiedIPv6: BindAddr "[::]:7946", the natural way to say
// "all interfaces" on IPv6, was accepted, and memberlist, which picks a
// private IP to advertise only for "0.0.0.0", advertised the bound IP
// itself: "::". The node's GossipAddr was "[::]:port" and every member it
// joined recorded it there, so a member on another host would probe and
// gossip to its own "::" (itself), declare the node dead, and never reach
// it. Join now refuses a configuration that advertises an unspecified
// address, however it came about (Tune's AdvertiseAddr too).
func TestBindUnspecifiedIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 on this machine: %v", err)
	}
	require.NoError(t, ln.Close())
	n1 := startNode(t, "n1")
	for _, tt := range []struct {
		bind  string
		tune  func(*ml.Config)
		names string // the setting the error blames
	}{
		{"[::]:0", quickGossip, "BindAddr"},
		{"127.0.0.1:0", func(c *ml.Config) { quickGossip(c); c.AdvertiseAddr = "0.0.0.0" }, "AdvertiseAddr"},
	} {
		m, err := Join(Config{
			NodeID: "n2", TransportAddr: transportAddr("n2"), BindAddr: tt.bind,
			Seeds: []string{n1.GossipAddr()}, Tune: tt.tune, Logger: testLogger(),
		})
		if err == nil {
			// What n1, the member it joined, records as n2's gossip address.
			var seen string
			require.Eventually(t, func() bool {
				for _, node := range n1.list.Members() {
					if node.Name == "n2" {
						seen = node.Address()
						return true
					}
				}
				return false
			}, waitLimit, 10*time.Millisecond)
			assert.NoError(t, m.Leave(waitLimit))
			assert.NoError(t, m.Close())
			t.Errorf("BindAddr %s: Join succeeded, advertising %s (n1 records n2 at %s), which another host cannot dial",
				tt.bind, m.GossipAddr(), seen)
			continue
		}
		assert.Nil(t, m)
		assert.ErrorIs(t, err, ErrInvalidConfig, tt.bind)
		assert.ErrorContains(t, err, tt.names)
	}
}

// TestConcurrentUse runs Watch, stop, Members and Lookup from several
// goroutines while members join, move and leave; run it with -race. The
// goroutines are paced so as not to starve gossip on a small machine.
func TestConcurrentUse(t *testing.T) {
	n1 := startNode(t, "n1")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				stop := n1.Watch(func(ev cluster.Event) { _, _ = n1.Lookup(ev.Member.ID) })
				_ = n1.Members()
				_, _ = n1.Lookup("n2")
				stop()
			}
		})
	}
	seen := watch(t, n1)
	n2 := startNode(t, "n2", n1.GossipAddr())
	n3 := startNode(t, "n3", n2.GossipAddr())
	require.NoError(t, n2.SetTransportAddr("127.0.0.1:8002", waitLimit))
	require.NoError(t, n3.Leave(waitLimit))
	seen.waitEvent(t, cluster.Event{Type: cluster.Leave, Member: member("n3")})
	seen.waitEvent(t, cluster.Event{Type: cluster.Update, Member: cluster.Member{ID: "n2", Addr: "127.0.0.1:8002"}})
	close(done)
	wg.Wait()
}
