package gossip_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/gossip"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingSender remembers what a Gossiper sends, without a network.
type recordingSender struct {
	mu    sync.Mutex
	sends []sent
	fail  map[cluster.NodeID]error
}

type sent struct {
	to       cluster.NodeID
	verb     transport.Verb
	deadline time.Time
	digest   map[cluster.NodeID]gossip.Entry
}

func (s *recordingSender) Send(ctx context.Context, to cluster.NodeID, verb transport.Verb, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail[to]; err != nil {
		return err
	}
	digest, err := gossip.DecodeDigest(payload)
	if err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	s.sends = append(s.sends, sent{to: to, verb: verb, deadline: deadline, digest: digest})
	return nil
}

func peers(ids ...cluster.NodeID) func() []cluster.NodeID {
	return func() []cluster.NodeID { return ids }
}

// Run's timing, on synctest's fake clock: one round per tick, Fanout
// digests per round, each expiring one interval after it was sent.
func TestRunSendsEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sender := &recordingSender{}
		g, err := gossip.New(gossip.Config{
			Self: "n1", Sender: sender, Peers: peers("n1", "n2", "n3", "n4", "n5"),
			Generation: 7, Rand: rand.New(rand.NewPCG(1, 1)),
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		ticker := time.NewTicker(gossip.DefaultInterval)
		defer ticker.Stop()
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx, ticker.C) }()

		start := time.Now()
		time.Sleep(time.Second + gossip.DefaultInterval/2) // fake time: 10 ticks
		synctest.Wait()
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)

		require.Len(t, sender.sends, 10*gossip.DefaultFanout)
		for i, s := range sender.sends {
			round := i/gossip.DefaultFanout + 1
			require.Equal(t, gossip.Verb, s.verb)
			require.NotEqual(t, cluster.NodeID("n1"), s.to)
			require.Equal(t, start.Add(time.Duration(round)*gossip.DefaultInterval+gossip.DefaultInterval), s.deadline,
				"a digest expires one interval after its round")
			require.Equal(t, gossip.Entry{Generation: 7, Heartbeat: uint64(round)}, s.digest["n1"])
		}
		require.Equal(t, gossip.Entry{Generation: 7, Heartbeat: 10}, must(g.Known("n1")))
	})
}

func TestRoundReportsFailedSends(t *testing.T) {
	down := errors.New("down")
	sender := &recordingSender{fail: map[cluster.NodeID]error{"n3": down}}
	var outcomes []string
	g, err := gossip.New(gossip.Config{
		Self: "n1", Sender: sender, Peers: peers("n2", "n3"), Generation: 1,
		OnSend: func(to cluster.NodeID, err error) { outcomes = append(outcomes, fmt.Sprint(to, " ", err)) },
	})
	require.NoError(t, err)
	queued, err := g.Round(t.Context())
	require.Equal(t, 1, queued)
	require.ErrorIs(t, err, down)
	require.ElementsMatch(t, []string{"n2 <nil>", "n3 down"}, outcomes)
}

// Peers may ask the Gossiper itself, to skip the nodes it suspects: Round
// must not call it with its lock held.
func TestPeersMayConsultTheGossiper(t *testing.T) {
	sender := &recordingSender{}
	var g *gossip.Gossiper
	alive := func() []cluster.NodeID {
		suspects := g.Stale(time.Minute)
		var out []cluster.NodeID
		for _, id := range []cluster.NodeID{"n2", "n3"} {
			if !slices.Contains(suspects, id) {
				out = append(out, id)
			}
		}
		return out
	}
	g, err := gossip.New(gossip.Config{Self: "n1", Sender: sender, Peers: alive, Generation: 1})
	require.NoError(t, err)
	done := make(chan int, 1)
	go func() {
		queued, _ := g.Round(t.Context())
		done <- queued
	}()
	select {
	case queued := <-done:
		assert.Equal(t, 2, queued)
	case <-time.After(10 * time.Second):
		t.Fatal("Round deadlocked: it calls Peers with the Gossiper's lock held")
	}
}

func must[T any](v T, ok bool) T {
	if !ok {
		panic("missing")
	}
	return v
}

// node is one gossiping transport on loopback.
type node struct {
	t *transport.Transport
	g *gossip.Gossiper
	// urgent counts digests that arrived on the urgent lane, other those
	// that did not.
	urgent, other atomic.Int64
}

// loopback runs n gossiping nodes, n1..nN, on 127.0.0.1 (see
// transporttest) with one fake clock.
type loopback struct {
	t       *testing.T
	cluster *transporttest.Cluster
	nodes   map[cluster.NodeID]*node
	now     atomic.Int64 // unix nanoseconds of the fake clock
}

func newLoopback(t *testing.T, n int) *loopback {
	l := &loopback{t: t, nodes: map[cluster.NodeID]*node{}}
	l.cluster = transporttest.New(t, n, transporttest.Options{ClusterName: "gossip-test", Tweak: func(i int, cfg *transport.Config) {
		gossip.Register(cfg)
	}})
	l.now.Store(t0.UnixNano())
	for i := range n {
		l.attach(i, 1)
	}
	return l
}

func (l *loopback) clock() time.Time { return time.Unix(0, l.now.Load()) }

// attach runs a gossiper of the given generation on node i.
func (l *loopback) attach(i int, generation uint64) *node {
	return l.attachWithClock(i, generation, l.clock)
}

// attachWithClock is attach with the node's own clock; generation 0 is
// the default, the clock's time at New.
func (l *loopback) attachWithClock(i int, generation uint64, now func() time.Time) *node {
	id, tr := l.cluster.ID(i), l.cluster.Nodes[i]
	n := &node{t: tr}
	var err error
	n.g, err = gossip.New(gossip.Config{
		Self: id, Sender: tr, Generation: generation, Now: now,
		// Gossip with everyone else: Fanout 3 of the (at most 3) others.
		Peers: func() []cluster.NodeID {
			var ids []cluster.NodeID
			for _, m := range l.cluster.Members.Members() {
				ids = append(ids, m.ID)
			}
			return ids
		},
		// A generous expiry: the test drives rounds faster than 100 ms.
		Interval: 5 * time.Second,
	})
	require.NoError(l.t, err)
	tr.Handle(gossip.Verb, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		if m.Lane == routing.Urgent {
			n.urgent.Add(1)
		} else {
			n.other.Add(1)
		}
		return n.g.ServeMessage(ctx, m)
	}))
	l.nodes[id] = n
	return n
}

// converge runs rounds on the given nodes, advancing the fake clock by
// 100 ms for each, until cond holds.
func (l *loopback) converge(ids []cluster.NodeID, cond func() bool) {
	l.t.Helper()
	ok := assert.Eventually(l.t, func() bool {
		l.now.Add(int64(gossip.DefaultInterval))
		for _, id := range ids {
			l.nodes[id].g.Round(l.t.Context())
		}
		return cond()
	}, 10*time.Second, 10*time.Millisecond)
	if !ok {
		l.t.Fatalf("no convergence:\n%s", l.dump())
	}
}

func (l *loopback) dump() string {
	s := ""
	for id, n := range l.nodes {
		s += fmt.Sprintf("%s: %v %+v\n", id, n.g.Entries(), n.t.Stats().Conns)
	}
	return s
}

// knows reports whether every node of ids has at least heartbeat of every
// other's generation gen[other].
func (l *loopback) knows(ids []cluster.NodeID, gen map[cluster.NodeID]uint64) bool {
	for _, a := range ids {
		for _, b := range ids {
			e, ok := l.nodes[a].g.Known(b)
			if !ok || e.Generation != gen[b] || e.Heartbeat == 0 {
				return false
			}
		}
	}
	return true
}

func TestGossipOverLoopback(t *testing.T) {
	ids := []cluster.NodeID{"n1", "n2", "n3", "n4"}
	l := newLoopback(t, len(ids))
	gens := map[cluster.NodeID]uint64{"n1": 1, "n2": 1, "n3": 1, "n4": 1}
	l.converge(ids, func() bool { return l.knows(ids, gens) })

	for _, id := range ids {
		n := l.nodes[id]
		require.Positive(t, n.urgent.Load(), "%s received digests", id)
		require.Zero(t, n.other.Load(), "%s received digests off the urgent lane", id)
		total := n.t.Stats().Total()
		require.Positive(t, total.MessagesSent)
		for _, c := range n.t.Stats().Conns {
			if c.Lane != routing.Urgent {
				require.Zero(t, c.MessagesSent, "%s sent on %s", id, c.Lane)
			}
		}
	}
}

// A node that restarts at the same address with a new generation is seen
// again by all; while it is down, it is the one stale node.
func TestGossipRestart(t *testing.T) {
	ids := []cluster.NodeID{"n1", "n2", "n3"}
	l := newLoopback(t, len(ids))
	gens := map[cluster.NodeID]uint64{"n1": 1, "n2": 1, "n3": 1}
	l.converge(ids, func() bool { return l.knows(ids, gens) })

	require.NoError(t, l.nodes["n3"].t.Close())
	// The survivors keep gossiping (to n3 too: those sends fail or expire)
	// and see each other move on, but not n3.
	survivors := []cluster.NodeID{"n1", "n2"}
	l.converge(survivors, func() bool {
		for _, a := range survivors {
			stale := l.nodes[a].g.Stale(500 * time.Millisecond)
			if len(stale) != 1 || stale[0] != "n3" {
				return false
			}
		}
		return true
	})

	_, err := l.cluster.Restart(2) // n3, on its address
	require.NoError(t, err)
	l.attach(2, 2)
	gens["n3"] = 2
	l.converge(ids, func() bool { return l.knows(ids, gens) })
	for _, a := range ids {
		require.Empty(t, l.nodes[a].g.Stale(500*time.Millisecond), "%s", a)
	}
}

// In a long-lived cluster nodes come and go: the table must not keep every
// node it ever heard of. A node whose heartbeat has stopped for longer than
// ForgetAfter is dropped; the digest of a node that has not dropped it yet
// does not bring it back, but a restart (a newer entry) does.
func TestGossiperForgetsDepartedPeers(t *testing.T) {
	now := t0
	var current []cluster.NodeID
	g, err := gossip.New(gossip.Config{
		Self: "n0", Sender: &recordingSender{}, Generation: 1,
		Now:   func() time.Time { return now },
		Peers: func() []cluster.NodeID { return current },
	})
	require.NoError(t, err)
	hear := func(from cluster.NodeID, digest map[cluster.NodeID]gossip.Entry) {
		t.Helper()
		_, err := g.ServeMessage(t.Context(), &transport.Message{From: from, Verb: gossip.Verb, Payload: gossip.AppendDigest(nil, digest)})
		require.NoError(t, err)
	}

	// 100 nodes, ten at a time, each live for 50 rounds and then gone.
	for wave := range 10 {
		current = current[:0]
		for i := range 10 {
			current = append(current, cluster.NodeID(fmt.Sprintf("n%d", 1+wave*10+i)))
		}
		for beat := range uint64(50) {
			for _, id := range current {
				hear(id, map[cluster.NodeID]gossip.Entry{id: {Generation: 1, Heartbeat: beat}})
			}
			now = now.Add(gossip.DefaultInterval)
			_, err := g.Round(t.Context())
			require.NoError(t, err)
		}
	}
	current = nil
	require.Len(t, g.Entries(), 101)
	now = now.Add(time.Hour)
	_, err = g.Round(t.Context())
	require.NoError(t, err)
	require.Equal(t, []cluster.NodeID{"n0"}, slices.Sorted(maps.Keys(g.Entries())),
		"departed nodes are kept for ever")

	// A late digest still holding n1's last entry: n1 stays gone.
	hear("n200", map[cluster.NodeID]gossip.Entry{"n200": {1, 1}, "n1": {Generation: 1, Heartbeat: 49}})
	_, ok := g.Known("n1")
	require.False(t, ok, "a forgotten node came back from an old digest")
	require.Equal(t, gossip.Entry{1, 1}, must(g.Known("n200")))
	// n1 restarts: its new generation is taken.
	hear("n1", map[cluster.NodeID]gossip.Entry{"n1": {Generation: 2}})
	require.Equal(t, gossip.Entry{Generation: 2}, must(g.Known("n1")))
}
