package memberlist

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/internode/internode/cluster"
)

// Membership is a cluster.Membership kept up to date by memberlist's gossip
// and failure detection. Create it with Join; end it with Leave (optional,
// graceful) and Close.
//
// Members and Lookup reflect memberlist's current view of live members with
// valid metadata, the local node included. Watchers are called from one
// goroutine owned by the Membership, never from memberlist's own goroutines,
// so a slow watcher delays other watchers but never gossip or failure
// detection. Events wait in a queue bounded by coalescing: at most two per
// member (see Watch).
//
// Unless Config.ReconnectInterval is negative, a Membership also heals
// partitions, as hashicorp/serf does: it remembers each member that failed
// (was declared dead; a member that called Leave is not remembered) for
// Config.ReconnectTimeout, and another goroutine it owns tries every
// ReconnectInterval to join again through one of them, chosen at random,
// preceded by the Seeds when this node's view holds no other live member. A
// member is forgotten as soon as it is alive again. Each attempt is a
// memberlist join, bounded by memberlist's TCPTimeout (ml.Config, see
// Config.Tune) for the dial and again for the exchange; at a failed
// member's address it follows a ping by the member's name, bounded by
// ProbeTimeout, that only the member answers: a node that took the address
// since (addresses are reused), perhaps of another cluster, is not joined,
// which would merge the two clusters. The goroutine stops at Leave or
// Close.
//
// Membership is safe for concurrent use.
type Membership struct {
	list       *ml.Memberlist
	logger     *log.Logger
	conflict   ml.ConflictDelegate    // Config.Tune's, if any; set once in Join
	self       cluster.NodeID         // set once in Join
	gossipAddr string                 // set once in Join
	meta       atomic.Pointer[[]byte] // this node's metadata, read by memberlist

	// gossipRound and retransmitMult are memberlist's, set once in Join:
	// how often it sends a broadcast, and how many times (gossipBound).
	gossipRound    time.Duration
	retransmitMult int

	mu      sync.Mutex // guards members, claimed, queue, watchers, closed and rc.failed
	rc      reconnector
	members map[cluster.NodeID]cluster.Member
	// claimed holds, for members other than this node, the gossip
	// addresses at which another process claimed the member's ID while
	// memberlist took the member for alive (delegate.NotifyConflict): a
	// restart on a new address not yet noticed, or a late alive message
	// about an earlier process. The latest first, at most maxClaims a
	// member.
	claimed  map[cluster.NodeID][]string
	queue    eventQueue
	watchers map[*watcher]struct{}
	closed   bool // memberlist's late callbacks are ignored

	wake         chan struct{} // one slot: "the queue has events"
	closing      chan struct{} // closed by Close: the dispatcher must exit
	dispatchDone chan struct{} // closed when the dispatcher has exited

	lifecycleMu   sync.Mutex // serialises Leave, SetTransportAddr and Close
	shutdown      bool       // memberlist has been shut down; guarded by lifecycleMu
	left          bool       // Leave has been called; guarded by lifecycleMu
	transportAddr string     // the address in meta; guarded by lifecycleMu
	closeOnce     sync.Once
	closeErr      error
}

var _ cluster.LookupFromWatch = (*Membership)(nil)

// watcher is one Watch registration.
type watcher struct {
	fn   func(cluster.Event)
	from uint64 // the first event seq it receives

	// running is a one-slot semaphore held while fn runs, so that stop can
	// wait for it; a channel rather than a mutex so that testing/synctest
	// sees who waits. It guards stopped.
	running chan struct{}
	stopped bool
}

// Join starts memberlist on cfg.BindAddr, advertising cfg.TransportAddr in
// this node's metadata, and joins the cluster through cfg.Seeds, if any.
// It returns once it has exchanged state with at least one seed other than
// this node, or at once without seeds: a new cluster. Seeds that all turn
// out to be this node (its GossipAddr, or another name for it: a host
// name, another of its IPs) also start a new cluster; but if the others do
// not answer, Join fails rather than leave this node alone while it
// believes it joined. The seed then knows this node, unless it still
// takes an earlier process under this ID at another gossip address for
// alive (a crash not yet detected): then the others take this node once
// they have declared that one dead, at their next reconnection round
// (Config.ReconnectInterval), or with reconnection disabled at their next
// push/pull (ml.Config.PushPullInterval, 30 s on a LAN). On error nothing
// is left running.
//
// Errors wrap ErrInvalidConfig for a bad cfg, including one under which
// memberlist would advertise an unspecified IP (BindAddr "[::]:port"
// without Tune's AdvertiseAddr); otherwise they come from
// memberlist (a port in use, no seed reachable), with "only this node
// answered" when some seeds were this node and the others unreachable.
func Join(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	bindIP, bindPort, _ := splitBindAddr(cfg.BindAddr) // validated above

	logger := cfg.Logger
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	m := newMembership(logger, cfg.TransportAddr)
	m.self = cfg.NodeID
	m.rc = newReconnector(cfg)
	m.rc.join = func(addr string) error { // bounded by conf.TCPTimeout, twice
		_, err := m.list.Join([]string{addr})
		return err
	}
	m.rc.answers = func(id cluster.NodeID, addr string) error { // bounded by conf.ProbeTimeout
		udp, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		_, err = m.list.Ping(string(id), udp) // a node under another name does not answer
		return err
	}
	m.rc.alone = func() bool { return m.list.NumMembers() <= 1 }

	conf := ml.DefaultLANConfig()
	conf.BindAddr = bindIP
	conf.BindPort = bindPort // 0: memberlist picks a port and advertises it
	conf.AdvertiseAddr = ""  // derived from the bound address
	conf.AdvertisePort = bindPort
	// A node declared dead (it crashed) may come back under its ID at a
	// new address (a new pod IP, a new port): memberlist refuses a known
	// node's new address until it has been dead this long, and 0 means
	// never. A live or suspect node's address still cannot be taken.
	conf.DeadNodeReclaimTime = time.Nanosecond
	if cfg.Tune != nil {
		cfg.Tune(conf)
	}
	conf.Name = string(cfg.NodeID)
	conf.Delegate = (*delegate)(m)
	conf.Events = (*delegate)(m)
	m.conflict = conf.Conflict // Tune's, called in turn
	conf.Conflict = (*delegate)(m)
	conf.Logger = m.logger
	conf.LogOutput = nil // memberlist refuses both Logger and LogOutput

	go m.dispatch()
	list, err := ml.Create(conf) // calls NotifyJoin for this node before returning
	if err != nil {
		close(m.closing)
		<-m.dispatchDone
		return nil, fmt.Errorf("memberlist: start on %s: %w", cfg.BindAddr, err)
	}
	m.list = list
	// memberlist advertises the IP it is bound to, except for 0.0.0.0 (then
	// a private IP) or Tune's AdvertiseAddr: bound to "::" it advertises
	// "::". A member on another host would probe and gossip to its own
	// "::", that is to itself, and declare this node dead.
	if ip := list.LocalNode().Addr; ip.IsUnspecified() {
		_ = m.Close()
		if conf.AdvertiseAddr != "" { // Tune's
			return nil, fmt.Errorf("%w: Tune's AdvertiseAddr %q is unspecified: other nodes cannot dial it",
				ErrInvalidConfig, conf.AdvertiseAddr)
		}
		return nil, fmt.Errorf("%w: BindAddr: %w", ErrInvalidConfig, unspecifiedAdvertiseError(cfg.BindAddr, ip.String()))
	}
	m.gossipAddr = list.LocalNode().Address()
	m.gossipRound, m.retransmitMult = conf.ProbeInterval, conf.RetransmitMult
	if conf.GossipInterval > 0 && conf.GossipNodes > 0 { // else broadcasts ride on probes
		m.gossipRound = conf.GossipInterval
	}
	// Joining oneself achieves nothing. The loop is not running yet.
	m.rc.seeds = slices.DeleteFunc(m.rc.seeds, func(s string) bool { return s == m.gossipAddr })

	if err := m.joinSeeds(cfg.Seeds); err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("memberlist: join through %v: %w", cfg.Seeds, err)
	}
	m.startReconnecting()
	return m, nil
}

// joinSeeds joins through each seed in turn, as memberlist's Join does, and
// fails unless another node answered or every seed turned out to be this
// node (a new cluster, as without seeds). memberlist counts this node, when
// a seed names it (a host name, another of its IPs), as a node contacted:
// its count cannot tell a join from a node talking to itself, which would
// leave a bootstrap believing it had joined while it is alone. A seed is
// this node when it answers and the node still knows no other.
func (m *Membership) joinSeeds(seeds []string) error {
	var errs []error
	var self []string // seeds that answered as this node
	for _, seed := range seeds {
		if seed == m.gossipAddr {
			continue // this node: nothing to join
		}
		if _, err := m.list.Join([]string{seed}); err != nil {
			errs = append(errs, err)
		} else if m.list.NumMembers() <= 1 {
			self = append(self, seed)
		}
	}
	if len(errs) == 0 || m.list.NumMembers() > 1 {
		return nil
	}
	err := errors.Join(errs...)
	if len(self) > 0 {
		return fmt.Errorf("only this node answered (at %s), no other seed: %w", strings.Join(self, ", "), err)
	}
	return err
}

// newMembership returns a Membership without memberlist or dispatcher.
func newMembership(logger *log.Logger, transportAddr string) *Membership {
	m := &Membership{
		logger:        logger,
		transportAddr: transportAddr,
		rc:            newReconnector(Config{}), // disabled
		members:       make(map[cluster.NodeID]cluster.Member),
		claimed:       make(map[cluster.NodeID][]string),
		watchers:      make(map[*watcher]struct{}),
		wake:          make(chan struct{}, 1),
		closing:       make(chan struct{}),
		dispatchDone:  make(chan struct{}),
	}
	meta := encodeMeta(transportAddr)
	m.meta.Store(&meta)
	return m
}

// Members implements cluster.Membership: the live members with valid
// metadata, the local node included (until it leaves), sorted by ID.
func (m *Membership) Members() []cluster.Member {
	m.mu.Lock()
	out := make([]cluster.Member, 0, len(m.members))
	for _, member := range m.members {
		out = append(out, member)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Lookup implements cluster.Membership.
func (m *Membership) Lookup(id cluster.NodeID) (cluster.Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	member, ok := m.members[id]
	return member, ok
}

// WatchersMayLookup implements cluster.LookupFromWatch: watchers are
// called from m's own goroutine, without the lock Lookup takes. A
// transport watching m therefore ignores a Leave told once the member is
// back, its Join queued behind the Leave for a slow watcher.
func (m *Membership) WatchersMayLookup() bool { return true }

// Watch implements cluster.Membership. fn receives the changes made after
// Watch was called, from a goroutine owned by m, one call at a time, each
// member's changes in order. While fn or another watcher is slow, later
// changes to the same member are merged (Join+Update is a Join with the new
// address, Update+Leave is a Leave, a Leave followed by a Join stays two
// events), so fn sees each member's latest state rather than every step.
// fn should therefore treat Join and Update as "set" and Leave as "delete":
// it may get a Join for a member it already knows, or a Leave for one it has
// not seen. Call Watch before Members to miss nothing.
//
// fn must not block for long and must not call stop, Leave or Close. stop
// waits for a running fn to return, after which fn is not called again; it
// is safe to call more than once. After Close, fn is never called.
func (m *Membership) Watch(fn func(cluster.Event)) (stop func()) {
	if fn == nil {
		panic("memberlist: Watch with nil fn")
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return func() {}
	}
	w := &watcher{fn: fn, from: m.queue.nextSeq, running: make(chan struct{}, 1)}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.watchers, w)
			m.mu.Unlock()
			w.running <- struct{}{} // waits for a running fn
			w.stopped = true
			<-w.running
		})
	}
}

// GossipAddr returns the "ip:port" memberlist gossips on, as advertised to
// other members: what they pass in Config.Seeds to join through this node.
func (m *Membership) GossipAddr() string { return m.gossipAddr }

// SetTransportAddr changes the transport address gossiped for this node.
// Every member, this one included, sees an Update. It waits up to timeout
// for the change to be gossiped to another member, if there is one; on
// timeout it returns ErrBroadcastTimeout and the change still spreads.
// With timeout <= 0 it waits as long as memberlist needs to gossip to the
// members it knows (see Leave), not forever: if the last other member
// leaves during the wait, memberlist has nobody to gossip to. If no other
// member is alive when the wait ends, it returns nil.
//
// It returns an error wrapping ErrInvalidAddr for a bad addr, ErrLeft after
// Leave, and an error satisfying errors.Is(err, net.ErrClosed) after Close.
func (m *Membership) SetTransportAddr(addr string, timeout time.Duration) error {
	if err := checkTransportAddr(addr); err != nil {
		return err
	}
	m.lifecycleMu.Lock()
	defer m.lifecycleMu.Unlock()
	switch {
	case m.shutdown:
		return fmt.Errorf("memberlist: set transport address: %w", net.ErrClosed)
	case m.left:
		return ErrLeft
	}
	meta := encodeMeta(addr)
	m.meta.Store(&meta)
	m.transportAddr = addr
	if timeout <= 0 {
		timeout = m.gossipBound() // memberlist waits forever on 0
	}
	if err := m.list.UpdateNode(timeout); err != nil && !m.aloneNow() {
		return ErrBroadcastTimeout // UpdateNode's only failure
	}
	return nil
}

// Leave tells the cluster that this node is leaving, so that the other
// members report a Leave promptly instead of waiting for failure detection,
// and do not try to reconnect to it. Locally, this node's own Leave event
// follows, and reconnection attempts stop.
//
// It gossips twice: first this node's metadata with a leaving flag (which
// tells the others that the departure is graceful; memberlist does not),
// then memberlist's leave message. If timeout > 0, it waits up to half of
// it for the first to reach the other members and up to the rest of it for
// the second to be gossiped to another member, if there is one; on timeout
// it returns ErrBroadcastTimeout and the other members will detect the
// departure by probing. Members that miss the flag treat this node as
// failed and try to reconnect to it until their ReconnectTimeout, which
// fails harmlessly once it has closed. With timeout <= 0, each of the two
// waits lasts as long as memberlist needs to gossip to the members it
// knows (a few gossip intervals: 3.2 s at most with memberlist's LAN
// defaults and up to 9 members), not forever: memberlist
// gossips to no member that has left, so once the last other member
// leaves meanwhile, as when the whole cluster shuts down, its wait would
// never end, nor Close, which waits for Leave. If no other member is left
// alive when the wait ends, there was nobody to tell: Leave returns nil.
// Gossip continues until Close, which should follow soon. Calling Leave
// again does nothing.
//
// After Close it returns an error satisfying errors.Is(err, net.ErrClosed).
func (m *Membership) Leave(timeout time.Duration) error {
	m.lifecycleMu.Lock()
	defer m.lifecycleMu.Unlock()
	if m.shutdown {
		return fmt.Errorf("memberlist: leave: %w", net.ErrClosed)
	}
	if m.left {
		return nil
	}
	m.left = true
	m.stopReconnecting() // Close waits for it

	// memberlist waits forever on 0: never pass it.
	updateTimeout, leaveTimeout := m.gossipBound(), time.Duration(0)
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
		updateTimeout = max(timeout/2, 1)
	}
	meta := encodeLeavingMeta(m.transportAddr)
	m.meta.Store(&meta)
	if err := m.list.UpdateNode(updateTimeout); err != nil {
		m.logger.Printf("[WARN] memberlist: leaving flag not gossiped within %v; "+
			"members that miss it will treat this node as failed", updateTimeout)
	}
	if timeout > 0 {
		leaveTimeout = max(time.Until(deadline), 1)
	} else {
		leaveTimeout = m.gossipBound()
	}
	if err := m.list.Leave(leaveTimeout); err != nil && !m.aloneNow() {
		return ErrBroadcastTimeout // Leave's only failure
	}
	return nil
}

// aloneNow reports whether memberlist knows no other live member: nobody
// a broadcast that timed out could still have reached.
func (m *Membership) aloneNow() bool {
	for _, n := range m.list.Members() { // alive and suspect ones
		if n.Name != string(m.self) {
			return false
		}
	}
	return true
}

// gossipBound is how long memberlist takes at most to gossip a broadcast,
// given a member to gossip to: it sends it RetransmitMult ×
// ceil(log10(nodes+1)) times, to one member or more each gossip round.
// The nodes it counts include dead ones that NumMembers leaves out, so
// one more power of ten is allowed for, and the result doubled for a busy
// machine; with memberlist's LAN defaults, 3.2 s for up to 9 members.
func (m *Membership) gossipBound() time.Duration {
	n := m.list.NumMembers()
	rounds := m.retransmitMult * (int(math.Ceil(math.Log10(float64(n+1)))) + 1)
	return max(2*time.Duration(rounds)*m.gossipRound, time.Second)
}

// Close stops gossiping without leaving: the other members notice through
// failure detection, as if this node had crashed. Call Leave first for a
// graceful exit. Close waits for a running Leave or SetTransportAddr, for a
// running watcher to return, and for the goroutines it owns to exit, which
// includes a reconnection attempt in progress: up to memberlist's
// TCPTimeout (10 s with the LAN defaults) for a peer that does not answer,
// twice that plus its ProbeTimeout (500 ms) at worst. Events not yet
// delivered are dropped. Afterwards Members and Lookup keep returning the
// last view and watchers are never called. It is safe to call more than once; later calls wait for the first
// and return its result.
func (m *Membership) Close() error {
	m.closeOnce.Do(func() {
		m.lifecycleMu.Lock()
		m.shutdown = true // memberlist panics on Leave after Shutdown
		m.lifecycleMu.Unlock()
		// No join on a memberlist that is shut down.
		m.stopReconnecting()
		m.waitReconnecting()
		m.closeErr = m.list.Shutdown()
		// memberlist may still call back after Shutdown (a suspicion timer
		// firing, a packet being handled); freeze the view.
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		close(m.closing)
		<-m.dispatchDone
	})
	return m.closeErr
}

// dispatch delivers queued events to watchers until Close.
func (m *Membership) dispatch() {
	defer close(m.dispatchDone)
	var targets []*watcher
	for {
		select {
		case <-m.closing:
			return
		case <-m.wake:
		}
		for {
			select {
			case <-m.closing:
				return
			default:
			}
			m.mu.Lock()
			ev, ok := m.queue.pop()
			if !ok {
				m.mu.Unlock()
				break
			}
			targets = targets[:0]
			for w := range m.watchers {
				if ev.seq >= w.from { // registered before the change
					targets = append(targets, w)
				}
			}
			m.mu.Unlock()
			for _, w := range targets {
				w.deliver(ev.Event)
			}
		}
		clear(targets[:cap(targets)]) // drop references to stopped watchers
	}
}

func (w *watcher) deliver(ev cluster.Event) {
	w.running <- struct{}{}
	defer func() { <-w.running }()
	if !w.stopped {
		w.fn(ev)
	}
}
