package raftinternode_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// network makes the raft transports of a cluster's nodes: over internode,
// or over raft's own NetworkTransport as the control.
type network interface {
	addr(i int) raft.ServerAddress
	// open returns node i's raft transport, a new one after each close.
	open(i int) raft.Transport
}

type networkKind struct {
	name  string
	start func(tb testing.TB, n int) network
}

var networks = []networkKind{
	{"internode", startInternode},
	{"tcp", startTCP},
}

type internodeNet struct {
	c    *transporttest.Cluster
	opts raftinternode.Options
}

func startInternode(tb testing.TB, n int) network {
	opts := raftinternode.Options{MaxInFlight: inFlight}
	c := transporttest.New(tb, n, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	return &internodeNet{c: c, opts: opts}
}

func (n *internodeNet) addr(i int) raft.ServerAddress { return raft.ServerAddress(n.c.ID(i)) }
func (n *internodeNet) open(i int) raft.Transport     { return raftinternode.New(n.c.Nodes[i], n.opts) }

type tcpNet struct {
	tb    testing.TB
	addrs []raft.ServerAddress
}

// inFlight is both transports' MaxRPCsInFlight in the tests and benchmark.
const inFlight = raft.DefaultMaxRPCsInFlight

func startTCP(tb testing.TB, n int) network {
	t := &tcpNet{tb: tb}
	for range n {
		// Bind, note the port, release it: open binds it again, as a
		// restarted process would.
		tr := newTCP(tb, "127.0.0.1:0")
		t.addrs = append(t.addrs, tr.LocalAddr())
		_ = tr.Close()
	}
	return t
}

func newTCP(tb testing.TB, addr string) *raft.NetworkTransport {
	tr, err := raft.NewTCPTransportWithConfig(addr, nil, &raft.NetworkTransportConfig{
		MaxPool: 3, Timeout: 10 * time.Second, MaxRPCsInFlight: inFlight,
		Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

func (n *tcpNet) addr(i int) raft.ServerAddress { return n.addrs[i] }
func (n *tcpNet) open(i int) raft.Transport     { return newTCP(n.tb, string(n.addrs[i])) }

// testFSM applies 8-byte big-endian commands: it keeps their count and a
// hash of the sequence, so two nodes agree only if they applied the same
// commands in the same order.
type testFSM struct {
	mu       sync.Mutex
	count    uint64
	hash     uint64
	restores int
	pad      int    // bytes of filler each snapshot carries after the state
	notify   func() // called after each Apply and Restore
}

type fsmState struct{ Count, Hash uint64 }

func (f *testFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], f.hash)
	h.Write(b[:])
	h.Write(l.Data)
	f.hash = h.Sum64()
	f.count++
	if f.notify != nil {
		f.notify()
	}
	return f.count
}

func (f *testFSM) setNotify(fn func()) {
	f.mu.Lock()
	f.notify = fn
	f.mu.Unlock()
}

func (f *testFSM) state() fsmState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fsmState{f.count, f.hash}
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return snapshot{fsmState{f.count, f.hash}, f.pad}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [16]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, rc); err != nil { // the filler
		return err
	}
	f.mu.Lock()
	f.count, f.hash = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	f.restores++
	notify := f.notify
	f.mu.Unlock()
	if notify != nil {
		notify()
	}
	return nil
}

func (f *testFSM) restoreCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

type snapshot struct {
	state fsmState
	pad   int
}

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], s.state.Count)
	binary.BigEndian.PutUint64(b[8:], s.state.Hash)
	_, err := sink.Write(b[:])
	filler := make([]byte, 64<<10)
	for left := s.pad; err == nil && left > 0; left -= len(filler) {
		_, err = sink.Write(filler[:min(left, len(filler))])
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}

// node is one raft server of a test cluster.
type node struct {
	id     raft.ServerID
	fsm    *testFSM
	logs   *raft.InmemStore
	snaps  raft.SnapshotStore
	trans  *faultTransport
	raft   *raft.Raft
	closed bool
}

// raftCluster is n raft servers in this process over one network kind.
type raftCluster struct {
	tb    testing.TB
	net   network
	conf  func() *raft.Config
	nodes []*node
	// changed wakes waitUntil: an FSM applied or restored, or a raft
	// observed a change of state or leader.
	changed chan raft.Observation
}

// poke wakes waitUntil; a wake-up already pending will do.
func (c *raftCluster) poke() {
	select {
	case c.changed <- raft.Observation{}:
	default:
	}
}

// waitUntil waits until cond holds, re-checking it whenever an FSM
// applies or a raft changes state or leader, and reports whether it held
// within d.
func (c *raftCluster) waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-c.changed:
		case <-deadline.C:
			return cond()
		}
	}
	return true
}

// testConfig is raft's default config (1 s timeouts: at 250 ms a 2-core
// machine loaded by other work and the race detector deposed leaders
// mid-test, over either transport), with snapshots only when asked.
func testConfig() *raft.Config {
	c := raft.DefaultConfig()
	setTimeouts(c, time.Second)
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotInterval = time.Hour // snapshots only when a test asks
	c.Logger = hclog.NewNullLogger()
	return c
}

func setTimeouts(c *raft.Config, d time.Duration) {
	c.HeartbeatTimeout = d
	c.ElectionTimeout = d
	c.LeaderLeaseTimeout = d
}

// newRaftCluster starts n bootstrapped servers; conf adjusts the config.
func newRaftCluster(tb testing.TB, kind networkKind, n int, conf func(*raft.Config)) *raftCluster {
	tb.Helper()
	c := &raftCluster{tb: tb, net: kind.start(tb, n), changed: make(chan raft.Observation, 1)}
	c.conf = func() *raft.Config {
		cfg := testConfig()
		if conf != nil {
			conf(cfg)
		}
		return cfg
	}
	var servers []raft.Server
	for i := range n {
		servers = append(servers, raft.Server{ID: raft.ServerID(c.net.addr(i)), Address: c.net.addr(i)})
	}
	for i := range n {
		nd := &node{id: servers[i].ID, fsm: &testFSM{}, logs: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
		boot := c.net.open(i)
		err := raft.BootstrapCluster(c.confFor(nd), nd.logs, nd.logs, nd.snaps, boot, raft.Configuration{Servers: servers})
		_ = boot.(raft.WithClose).Close()
		if err != nil {
			tb.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
		c.start(i)
	}
	tb.Cleanup(c.close)
	return c
}

func (c *raftCluster) confFor(nd *node) *raft.Config {
	cfg := c.conf()
	cfg.LocalID = nd.id
	return cfg
}

// start starts node i's raft on its stores with a new transport.
func (c *raftCluster) start(i int) {
	nd := c.nodes[i]
	nd.trans = newFaultTransport(c.net.open(i))
	nd.fsm.setNotify(c.poke)
	r, err := raft.NewRaft(c.confFor(nd), nd.fsm, nd.logs, nd.logs, nd.snaps, nd.trans)
	if err != nil {
		c.tb.Fatal(err)
	}
	r.RegisterObserver(raft.NewObserver(c.changed, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	}))
	nd.raft, nd.closed = r, false
}

// stop shuts node i's raft and its transport down.
func (c *raftCluster) stop(i int) {
	nd := c.nodes[i]
	if nd.closed {
		return
	}
	nd.closed = true
	if err := nd.raft.Shutdown().Error(); err != nil {
		c.tb.Error(err)
	}
	_ = nd.trans.Close()
}

// restartEmpty restarts node i with empty stores and a new FSM, as a
// replacement machine with the same name.
func (c *raftCluster) restartEmpty(i int) {
	c.stop(i)
	nd := c.nodes[i]
	nd.fsm, nd.logs, nd.snaps = &testFSM{}, raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	c.start(i)
}

func (c *raftCluster) close() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// leader waits for a leader among the running nodes not in except, and
// returns its index once every one of them agrees.
func (c *raftCluster) leader(except ...int) int {
	c.tb.Helper()
	leader := -1
	if !c.waitUntil(10*time.Second, func() bool {
		i, ok := c.agreedLeader(except)
		leader = i
		return ok
	}) {
		c.tb.Fatalf("no leader agreed within 10s")
	}
	return leader
}

func (c *raftCluster) agreedLeader(except []int) (int, bool) {
	leader := -1
	for i, nd := range c.nodes {
		if nd.closed || contains(except, i) {
			continue
		}
		addr, _ := nd.raft.LeaderWithID()
		if addr == "" {
			return -1, false
		}
		j := c.index(addr)
		if j < 0 || contains(except, j) || (leader >= 0 && j != leader) {
			return -1, false
		}
		leader = j
	}
	return leader, leader >= 0 && c.nodes[leader].raft.State() == raft.Leader
}

func (c *raftCluster) index(addr raft.ServerAddress) int {
	for i := range c.nodes {
		if c.net.addr(i) == addr {
			return i
		}
	}
	return -1
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// apply applies n commands numbered from first through node i, with all
// their futures in flight at once, and waits for them.
func (c *raftCluster) apply(i int, first, n uint64) {
	c.tb.Helper()
	c.applySized(i, first, n, func(uint64) int { return 8 })
}

// applySized is apply with commands of size(k) bytes (at least 8): the
// number, then filler.
func (c *raftCluster) applySized(i int, first, n uint64, size func(k uint64) int) {
	c.tb.Helper()
	futures := make([]raft.ApplyFuture, 0, n)
	for k := first; k < first+n; k++ {
		b := make([]byte, max(8, size(k)))
		binary.BigEndian.PutUint64(b, k)
		futures = append(futures, c.nodes[i].raft.Apply(b, 10*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			c.tb.Fatalf("apply: %v", err)
		}
	}
}

// converge waits until every running node not in except has applied count
// commands, and checks that they all hold the same state.
func (c *raftCluster) converge(count uint64, except ...int) fsmState {
	c.tb.Helper()
	var states map[fsmState][]int
	if !c.waitUntil(15*time.Second, func() bool {
		states = map[fsmState][]int{}
		done := true
		for i, nd := range c.nodes {
			if nd.closed || contains(except, i) {
				continue
			}
			s := nd.fsm.state()
			done = done && s.Count == count
			states[s] = append(states[s], i)
		}
		return done
	}) {
		c.tb.Fatalf("nodes did not converge on %d commands: %v", count, states)
	}
	if len(states) != 1 {
		c.tb.Fatalf("nodes applied %d commands but disagree: %v", count, states)
	}
	for s := range states {
		return s
	}
	return fsmState{}
}

// faultTransport wraps a raft transport so that a test can cut its node
// off from every other: while isolated, calls fail and incoming RPCs are
// answered with an error before raft sees them. It works the same over
// both networks, which is what the comparison needs.
type faultTransport struct {
	raft.Transport
	isolated atomic.Bool
	consumer chan raft.RPC
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

var errIsolated = errors.New("test: node isolated")

func newFaultTransport(inner raft.Transport) *faultTransport {
	f := &faultTransport{Transport: inner, consumer: make(chan raft.RPC), stop: make(chan struct{}), done: make(chan struct{})}
	go f.forward()
	return f
}

func (f *faultTransport) forward() {
	defer close(f.done)
	for {
		select {
		case rpc := <-f.Transport.Consumer():
			if f.isolated.Load() {
				rpc.Respond(nil, errIsolated)
				continue
			}
			select {
			case f.consumer <- rpc:
			case <-f.stop:
				rpc.Respond(nil, raft.ErrTransportShutdown)
				return
			}
		case <-f.stop:
			return
		}
	}
}

func (f *faultTransport) Consumer() <-chan raft.RPC { return f.consumer }

func (f *faultTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	f.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		if f.isolated.Load() {
			rpc.Respond(nil, errIsolated)
			return
		}
		cb(rpc)
	})
}

func (f *faultTransport) check() error {
	if f.isolated.Load() {
		return errIsolated
	}
	return nil
}

func (f *faultTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	p, err := f.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &faultPipeline{AppendPipeline: p, f: f}, nil
}

func (f *faultTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Transport.AppendEntries(id, target, args, resp)
}

func (f *faultTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Transport.RequestVote(id, target, args, resp)
}

func (f *faultTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

func (f *faultTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Transport.InstallSnapshot(id, target, args, resp, data)
}

func (f *faultTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Transport.TimeoutNow(id, target, args, resp)
}

func (f *faultTransport) Close() error {
	f.once.Do(func() {
		close(f.stop)
		<-f.done
		if c, ok := f.Transport.(raft.WithClose); ok {
			_ = c.Close()
		}
	})
	return nil
}

type faultPipeline struct {
	raft.AppendPipeline
	f *faultTransport
}

func (p *faultPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.f.check(); err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
