package transport

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// hookedMembership is a Static whose Lookup of one ID runs a hook once,
// after answering: the moment between a caller's Lookup and what it does
// with the answer.
type hookedMembership struct {
	*cluster.Static
	mu   sync.Mutex
	id   cluster.NodeID
	hook func()
}

func (m *hookedMembership) arm(id cluster.NodeID, hook func()) {
	m.mu.Lock()
	m.id, m.hook = id, hook
	m.mu.Unlock()
}

func (m *hookedMembership) Lookup(id cluster.NodeID) (cluster.Member, bool) {
	member, ok := m.Static.Lookup(id)
	m.mu.Lock()
	hook := m.hook
	if id != m.id {
		hook = nil
	}
	if hook != nil {
		m.hook = nil
	}
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	return member, ok
}

// TestAMemberThatLeftDuringASendIsForgotten: a Send to n2 looks n2 up (a
// member), then n2 leaves (its Leave finds no entry to delete), then
// peerFor makes the entry as a member's. That entry of a node no longer a
// member was kept for ever, listed in Stats: the janitor forgot only
// strangers' entries. It now asks the membership about every entry.
func TestAMemberThatLeftDuringASendIsForgotten(t *testing.T) {
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	members := &hookedMembership{Static: static}
	tr := coreTransport(t, func(c *Config) { c.Membership = members })

	members.arm("n2", func() { static.Remove("n2") }) // n2 leaves right after the Send's Lookup
	_ = tr.Send(context.Background(), "n2", 1, []byte("x"))

	_, stillMember := static.Lookup("n2")
	require.False(t, stillMember)
	// Wait for the writer to give up (its dial finds n2 unknown) and the
	// entry to be quiet, then sweep as the janitor does.
	require.Eventually(t, func() bool {
		p := tr.peerStats("n2")
		return p == nil || p.quiet()
	}, 5*time.Second, time.Millisecond)
	tr.forgetQuietStrangers()
	tr.forgetQuietStrangers()

	p := tr.peerStats("n2")
	var listed []PeerStats
	for _, ps := range tr.Stats().Peers {
		if ps.Peer == "n2" {
			listed = append(listed, ps)
		}
	}
	assert.True(t, p == nil, "the entry of a node that left is kept (member=%v)", p != nil && p.member.Load())
	assert.Empty(t, listed, "Stats lists a departed node as a peer")
}

// TestALeavingAndRejoiningPeerKeepsOneDepartedEntry: every Leave of a peer
// that carried traffic kept its whole peer entry (lanes, queues, buffers)
// for Stats, for the life of the transport: a node that leaves and rejoins
// again and again (restarts, membership flapping) grew the heap without
// bound, about 5 KB a cycle. The entries of one node now fold into one.
func TestALeavingAndRejoiningPeerKeepsOneDepartedEntry(t *testing.T) {
	static := cluster.NewStatic()
	// A real peer so that the lanes connect and allocate what they use.
	n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), func(c *Config) {
		c.Security.AcceptUnknownPeers = true
	})
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil }))

	n1 := startNode(t, "n1", static, nil)

	cycle := func() {
		static.Add(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := n1.Request(ctx, "n2", 1, make([]byte, 1000))
		require.NoError(t, err)
		static.Remove("n2")
	}
	for range 5 { // warm up
		cycle()
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	const cycles = 50
	for range cycles {
		cycle()
	}
	after := heap()
	n1.peersMu.RLock()
	listed := len(n1.departed)
	n1.peersMu.RUnlock()
	t.Logf("departed entries: %d; heap grew %d bytes over %d leave/rejoin cycles (%d bytes a cycle)",
		listed, int64(after)-int64(before), cycles, (int64(after)-int64(before))/cycles)
	// An earlier entry that still counted something when the next Leave
	// came (its response's capacity not yet given back, on a busy
	// machine) is listed beside the latest until it is quiet, when the
	// janitor's sweep folds it in; every other has been folded already.
	// Unfolded, there would be one a cycle.
	assert.LessOrEqual(t, listed, 5, "every Leave keeps a whole peer entry")
	assert.Eventually(t, func() bool {
		n1.peersMu.Lock()
		defer n1.peersMu.Unlock()
		n1.pruneDeparted() // the janitor's sweep
		return len(n1.departed) <= 1
	}, 5*time.Second, time.Millisecond, "the earlier entries, quiet, never folded into the latest")
}

// deferredWatch is a hookedMembership whose events reach the transport
// only when the test says so, as cluster/memberlist's dispatcher delivers
// them from its own goroutine some time after Lookup already answers.
type deferredWatch struct {
	*hookedMembership
}

func (m deferredWatch) Watch(fn func(cluster.Event)) func() { return func() {} }

// TestJanitorSparesAMemberThatJoinsDuringItsSweep: the janitor asks the
// membership about a stranger (no), then the node joins (Lookup says yes
// at once; the event is still on its way), and a Send to it finds the
// stranger's entry and waits for capacity, holding nothing; the janitor
// then forgets the entry under the Send. The Send failed with
// ErrUnknownPeer though the node is a member; it now looks the peer up
// again and goes on.
func TestJanitorSparesAMemberThatJoinsDuringItsSweep(t *testing.T) {
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	members := deferredWatch{&hookedMembership{Static: static}}
	tr := coreTransport(t, func(c *Config) {
		c.Membership = members
		c.Memory.MaxMessageSize = 64 << 10
		c.Memory.Outbound = Limits{PerConnection: 128 << 10, PerPeer: 160 << 10, Node: 160 << 10} // 140 KiB for sends
		c.Memory.WaitForCapacity = true
	})
	for range 2 { // fill the node's outbound capacity
		require.NoError(t, tr.Send(context.Background(), "n2", 1, make([]byte, 60<<10)))
	}
	_, err := tr.peerFor("n3", false) // a stranger's entry
	require.NoError(t, err)

	sent := make(chan error, 1)
	members.arm("n3", func() { // the janitor's Lookup has just said "not a member"
		static.Add(cluster.Member{ID: "n3", Addr: "127.0.0.1:1"})
		go func() { sent <- tr.Send(context.Background(), "n3", 1, make([]byte, 60<<10)) }()
		require.Eventually(t, func() bool { return tr.outBudget.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	})
	tr.forgetQuietStrangers()
	tr.Close()
	assert.NotErrorIs(t, <-sent, ErrUnknownPeer, "a Send to a member failed as to an unknown peer")
}

// TestALeavingPeersConnectionsClose: a member that leaves has its
// connections closed both ways, as the README says. Only this node's
// connections to it were; those it had opened to this node were still
// served.
func TestALeavingPeersConnectionsClose(t *testing.T) {
	m1 := cluster.NewStatic()
	n1 := startNode(t, "n1", m1, nil)
	n1.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil }))

	n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()}), nil)
	m1.Add(cluster.Member{ID: "n2", Addr: n2.Addr().String()})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n2.Request(ctx, "n1", 1, []byte("x"))
	require.NoError(t, err)
	fromN2 := func() int {
		n1.inboundMu.Lock()
		defer n1.inboundMu.Unlock()
		n := 0
		for ic := range n1.inConns {
			if ic.from == "n2" {
				n++
			}
		}
		return n
	}
	require.Equal(t, 1, fromN2())
	m1.Remove("n2")
	assert.Eventually(t, func() bool { return fromN2() == 0 }, 5*time.Second, time.Millisecond,
		"n2 left n1's membership; its connection to n1 stays open and served")
}

// TestOneWayMessagesWaitForAPeerThatDoesNotKnowThisNodeYet: a peer whose
// membership has not heard of this node yet (gossip converging) refuses
// its handshake as UnknownNode. That refusal was taken as final and every
// queued message failed; one-way messages now wait, as for a peer that is
// down, and are delivered once the peer knows this node.
func TestOneWayMessagesWaitForAPeerThatDoesNotKnowThisNodeYet(t *testing.T) {
	m2 := cluster.NewStatic() // n2 knows no one yet
	n2 := startNode(t, "n2", m2, nil)
	got := make(chan string, 1)
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) {
		got <- string(m.Payload)
		return nil, nil
	}))

	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), func(c *Config) {
		c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	})

	require.NoError(t, n1.Send(context.Background(), "n2", 1, []byte("hello")))
	require.Eventually(t, func() bool { return n1.Stats().Total().ConnectFailures > 0 }, 5*time.Second, time.Millisecond,
		"n2 refuses n1")
	m2.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
	select {
	case p := <-got:
		assert.Equal(t, "hello", p)
	case <-time.After(10 * time.Second):
		t.Fatalf("the message was not delivered once n2 knew n1: dropped %v", n1.Stats().Total().Dropped)
	}
}

// startNode starts a transport for node id on loopback with members as its
// membership; tweak, if any, adjusts its config first.
func startNode(t *testing.T, id cluster.NodeID, members cluster.Membership, tweak func(*Config)) *Transport {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = id, "test", "127.0.0.1:0"
	cfg.Membership = members
	cfg.Telemetry.Logger = discardLogger
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := New(cfg)
	require.NoError(t, err)
	tr.Start()
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestAMemberWhoseLeaveIsOnItsWayKeepsItsName: the membership already
// says n2 is gone, its Leave event not yet delivered (cluster/memberlist
// delivers from its own goroutine), when the janitor sweeps. It marked
// n2's entry a stranger's: forgotten if quiet, its counts folded into the
// strangers', or, when the Leave came, kept as a departed entry labelled
// StrangersPeer. Either way a member's counts moved to the strangers'. It
// now keeps the entry as n2's until the Leave, or, once quiet, departs it
// as the Leave would.
func TestAMemberWhoseLeaveIsOnItsWayKeepsItsName(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		t.Run(map[bool]string{false: "busy", true: "quiet"}[quiet], func(t *testing.T) {
			static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
			members := deferredWatch{&hookedMembership{Static: static}}
			tr := coreTransport(t, func(c *Config) {
				c.Membership = members
				c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Millisecond, 2*time.Millisecond
			})
			ctx := context.Background()
			if quiet { // the message expires, and the writer goes
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
				defer cancel()
			}
			require.NoError(t, tr.Send(ctx, "n2", 1, []byte("x")))
			p := tr.peerStats("n2")
			require.NotNil(t, p)
			require.Eventually(t, func() bool { return p.outbound[routing.Small].connectFailures.Load() > 0 }, 5*time.Second, time.Millisecond)
			if quiet {
				require.Eventually(t, p.quiet, 5*time.Second, time.Millisecond)
			}
			static.Remove("n2") // Lookup says no; the Leave is on its way
			tr.forgetQuietStrangers()
			tr.membershipChanged(cluster.Event{Type: cluster.Leave, Member: cluster.Member{ID: "n2"}})

			var n2, strangers uint64
			for _, cs := range tr.Stats().Conns {
				switch cs.Peer {
				case "n2":
					n2 += cs.ConnectFailures
				case StrangersPeer:
					strangers += cs.ConnectFailures
				}
			}
			assert.Positive(t, n2, "n2's counts kept under its name")
			assert.Zero(t, strangers, "a member's counts moved to the strangers'")
		})
	}
}

// TestLeaveEndsASendWaitingOnARetiredLane: a Send to n2 waits for the
// node's outbound room, held by messages for n3, which cannot be reached.
// Meanwhile n2's small lane is closed for being idle and retired, and then
// n2 leaves. The Send waited on the retired lane's stop channel, which
// nothing closes once the lane is gone, and so it waited until room freed
// or its context ended: for ever here. Retiring a lane now sends its
// waiting Sends to its successor, which the peer's leaving reaches.
func TestLeaveEndsASendWaitingOnARetiredLane(t *testing.T) {
	n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), nil)
	n2.Handle(1, HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return nil, nil }))
	members := cluster.NewStatic(
		cluster.Member{ID: "n2", Addr: n2.Addr().String()},
		cluster.Member{ID: "n3", Addr: "127.0.0.1:1"}) // nothing listens
	n1 := startNode(t, "n1", members, func(c *Config) {
		c.Memory.MaxMessageSize = 4 << 10
		c.Memory.Outbound = Limits{PerConnection: 16 << 10, PerPeer: 16 << 10, Node: 16 << 10}
		c.Memory.WaitForCapacity = true
		c.Timeouts.Idle = 50 * time.Millisecond
	})
	require.NoError(t, n1.Send(context.Background(), "n2", 1, []byte("hello"))) // n2's small lane, soon idle
	p := n1.peerStats("n2")
	require.NotNil(t, p)
	first := p.lanes[routing.Small].Load()
	require.NotNil(t, first)
	for range 3 { // three quarters of the node's room, for as long as n3 is away
		require.NoError(t, n1.Send(context.Background(), "n3", 1, make([]byte, 4<<10)))
	}
	sent := make(chan error, 1)
	go func() { sent <- n1.Send(context.Background(), "n2", 1, make([]byte, 4<<10)) }()
	require.Eventually(t, func() bool { return n1.outBudget.Waiting() == 1 }, 5*time.Second, time.Millisecond, "the Send waits for room")
	require.Eventually(t, func() bool { return p.lanes[routing.Small].Load() != first }, 5*time.Second, time.Millisecond, "n2's first small lane retired")

	members.Remove("n2")
	select {
	case err := <-sent:
		require.ErrorIs(t, err, ErrPeerLeft)
	case <-time.After(10 * time.Second):
		t.Fatalf("a Send to n2, waiting for room, still waits 10 s after n2 left (waiters %d)", n1.outBudget.Waiting())
	}
}

// TestJanitorLosesNoMessageToAMemberThatJustJoined: as in
// TestJanitorSparesAMemberThatJoinsDuringItsSweep, the janitor has just
// been told a stranger is no member when it joins, and a Send to it finds
// the stranger's entry; here the Send needs no wait for capacity, and
// queues its message between the janitor's look at the entry (quiet) and
// its stopping it. The Send returned nil, and its message, to a member,
// was dropped as to an unknown peer, on counters already folded into the
// strangers' totals, so that Stats never showed the drop. The janitor now
// retires a quiet entry in one step, and the Send tries a new one.
func TestJanitorLosesNoMessageToAMemberThatJustJoined(t *testing.T) {
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	members := deferredWatch{&hookedMembership{Static: static}}
	var dropped atomic.Int64
	tr := coreTransport(t, func(c *Config) {
		c.Membership = members
		c.OnDropped = func(d DroppedMessage) { dropped.Add(1) }
	})
	accepted := 0
	for i := range 500 {
		id := cluster.NodeID(fmt.Sprintf("j%d", i))
		_, err := tr.peerFor(id, false) // a stranger's entry
		require.NoError(t, err)
		sent := make(chan error, 1)
		members.arm(id, func() { // the janitor's Lookup has just said "not a member"
			static.Add(cluster.Member{ID: id, Addr: "127.0.0.1:1"})
			go func() { sent <- tr.Send(context.Background(), id, 1, []byte("x")) }()
		})
		tr.forgetQuietStrangers()
		if <-sent == nil {
			accepted++
		}
		if dropped.Load() > 0 {
			break
		}
	}
	var inStats uint64
	for _, n := range tr.Stats().Total().Dropped {
		inStats += n
	}
	t.Logf("Sends accepted %d; messages to members dropped %d (Stats shows %d)", accepted, dropped.Load(), inStats)
	require.Zero(t, dropped.Load(), "a one-way message to a member, accepted by Send, was dropped")
}

// TestSendToAStrangersEntryIsRefused: a node that connected to this one
// without being a member (AcceptUnknownPeers) has an entry here. A Send to
// its ID found that entry, skipped the membership check, and returned nil;
// the message then failed when its dial found the peer unknown. It is
// refused at once with ErrUnknownPeer, as for an ID without an entry.
func TestSendToAStrangersEntryIsRefused(t *testing.T) {
	tr := coreTransport(t, nil)
	p, err := tr.claimConn("stranger", uint8(routing.Small)) // it connected, and left
	require.NoError(t, err)
	tr.releaseConn(p, uint8(routing.Small))
	require.NotNil(t, tr.peerStats("stranger"), "the stranger has an entry")
	err = tr.Send(context.Background(), "stranger", 1, []byte("x"))
	require.ErrorIs(t, err, ErrUnknownPeer)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = tr.Request(ctx, "stranger", 1, []byte("x"))
	require.ErrorIs(t, err, ErrUnknownPeer)
}

// notifyUnderLock is a Membership that tells its watchers of a change
// while it holds the lock its Lookup takes, as a simple implementation
// does (cluster.Membership does not forbid it). Its lock is a channel so
// that the test can break a deadlock and end. onLookup, if set, runs at
// the start of every Lookup, before the lock.
type notifyUnderLock struct {
	lock     chan struct{} // a one-slot lock
	abort    chan struct{} // closed: Lookup no longer waits for the lock
	members  map[cluster.NodeID]cluster.Member
	watchers []func(cluster.Event)
	onLookup func(cluster.NodeID)
}

func newNotifyUnderLock(members ...cluster.Member) *notifyUnderLock {
	m := &notifyUnderLock{lock: make(chan struct{}, 1), abort: make(chan struct{}), members: map[cluster.NodeID]cluster.Member{}}
	for _, mb := range members {
		m.members[mb.ID] = mb
	}
	return m
}

func (m *notifyUnderLock) Members() []cluster.Member {
	m.lock <- struct{}{}
	defer func() { <-m.lock }()
	var out []cluster.Member
	for _, mb := range m.members {
		out = append(out, mb)
	}
	return out
}

func (m *notifyUnderLock) Lookup(id cluster.NodeID) (cluster.Member, bool) {
	if m.onLookup != nil {
		m.onLookup(id)
	}
	select {
	case m.lock <- struct{}{}:
		defer func() { <-m.lock }()
	case <-m.abort: // the test gave up: read without the lock
	}
	mb, ok := m.members[id]
	return mb, ok
}

func (m *notifyUnderLock) Watch(fn func(cluster.Event)) func() {
	m.lock <- struct{}{}
	m.watchers = append(m.watchers, fn)
	<-m.lock
	return func() {}
}

// add adds mb and tells the watchers, holding the lock throughout;
// locked is called once the lock is held.
func (m *notifyUnderLock) add(mb cluster.Member, locked func()) {
	m.lock <- struct{}{}
	defer func() { <-m.lock }()
	m.members[mb.ID] = mb
	locked()
	for _, fn := range m.watchers {
		fn(cluster.Event{Type: cluster.Join, Member: mb})
	}
}

// TestAJoinToldUnderTheMembershipsLockDoesNotDeadlockWithAnEntryBeingMade:
// a Send to member n3 makes n3's entry, asking the membership for n3's
// address (newPeer's Lookup) while it holds peersMu; meanwhile n4 joins,
// and the membership tells its watchers of the Join while it holds the
// lock its Lookup takes. membershipChanged now takes peersMu for every
// Join to look the entry up: the Send waits for the membership's lock
// under peersMu, the Join's notification for peersMu under that lock,
// and neither ever returns. Before, a Join for an ID with no entry took
// no lock and returned.
func TestAJoinToldUnderTheMembershipsLockDoesNotDeadlockWithAnEntryBeingMade(t *testing.T) {
	members := newNotifyUnderLock(cluster.Member{ID: "n3", Addr: "127.0.0.1:1"})
	n1 := startNode(t, "n1", members, nil)

	var n3Lookups atomic.Int32
	underPeersMu := make(chan struct{})
	proceed := make(chan struct{})
	members.onLookup = func(id cluster.NodeID) {
		// peerFor asks first, then again as it makes the entry (under
		// peersMu, newPeer, before the fix).
		if id == "n3" && n3Lookups.Add(1) == 2 {
			close(underPeersMu)
			<-proceed
		}
	}
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		sent <- n1.Send(ctx, "n3", 1, []byte("x"))
	}()
	select {
	case <-underPeersMu:
	case <-time.After(5 * time.Second):
		t.Fatal("setup: the Send asked for n3 but once")
	}

	joined := make(chan struct{})
	go func() {
		defer close(joined)
		members.add(cluster.Member{ID: "n4", Addr: "127.0.0.1:1"}, func() { close(proceed) })
	}()
	select {
	case <-joined:
	case <-time.After(5 * time.Second):
		t.Error("deadlock: n4's Join, told under the membership's lock, waits for peersMu, held by a Send that waits for that lock in Lookup")
		close(members.abort) // let the Send's Lookup go, and so the Join
		<-joined
	}
	<-sent
}
