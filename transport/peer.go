package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
)

// peer holds everything this node keeps about one other node: its outbound
// lanes (created on first use), what arrived from it, and its share of the
// node's outbound and inbound budgets.
type peer struct {
	id cluster.NodeID
	t  *Transport
	// addr is the member's address as this node last learned it (nil:
	// not a member then); a change moves the peer's connections (moved).
	addr    atomic.Pointer[string]
	mu      sync.Mutex // guards creating lanes, starting writers and stopping
	lanes   [routing.NumLanes]atomic.Pointer[outConn]
	stopped error // why the peer's writers stopped; nil while running
	// stopOnce runs stop's work once: Close may stop an entry it listed
	// that a janitor's sweep forgot, and stops meanwhile, and what stop
	// does after its writers are gone (failing what they held, closing
	// their connections) is for one goroutine alone. A second stop waits
	// for the first, unless the first was a Leave's stopThen, which does
	// not wait itself: its entry is out of peers by then, and Close and
	// the janitor stop only entries listed there (Close waits for
	// stopThen's goroutine in wg).
	stopOnce sync.Once
	// ctx ends when the peer stops, with why as its cause (stop): this
	// node's file transfers and streams to the peer end with it, as its
	// lanes do. It is the transport's, so the transport's Close ends it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// What the peer's lanes sent and received: kept here, not in the
	// lanes, which are dropped while idle.
	outbound [routing.NumLanes]connCounters
	inbound  [routing.NumLanes]inCounters
	health   [routing.NumLanes]laneHealth // for Health
	// retiredCoalescing sums the counts of the coalescing strategies of
	// the lanes dropped for being idle (writerMayExit), so that
	// ConnStats.Coalescing does not go back when a lane is; guarded by
	// coalMu, under which a lane is dropped, so that laneStats counts it
	// once: live, or here. SetCoalescing clears it, as its new strategies
	// count afresh. Not mu: Stats must not wait for mu, which is held
	// while the coalescing factory, user code, runs (lane, SetCoalescing).
	// Order: mu, then coalMu, then an outConn's strategyMu.
	coalMu            sync.Mutex
	retiredCoalescing [routing.NumLanes]coalescing.Stats
	// member: the membership knew the peer when this entry was made, or
	// has since (an entry made for a stranger that then joined). Entries
	// of peers it does not know are forgotten once they are quiet (see
	// Transport.forgetQuietStrangers).
	member atomic.Bool

	outAccount, inAccount *limit.Account // shared by the peer's connections
	// Socket queue peaks per lane since the last metrics collection,
	// measured after the writes and reads a sockstat.Sampler picks.
	sendPeak, recvPeak [routing.NumLanes]sockstat.Peak
	// The largest depths measured since the transport started, for Stats.
	sendMax, recvMax [routing.NumLanes]sockstat.Peak
	// queuesMeasured: a socket queue depth was read on the lane (a conn
	// without a kernel socket cannot be asked).
	queuesMeasured [routing.NumLanes]atomic.Bool
	streams        streamState
	// streamedHandlers counts the ReaderHandlers of the peer's streamed
	// large messages still running (streamLarge), for quiet: they hold no
	// room once their message's last part came.
	streamedHandlers atomic.Int64
	// inConns counts the peer's established inbound connections by kind
	// (lanes, stream session, file transfers), for Config.Security.MaxConnsPerPeer;
	// guarded by Transport.inboundMu.
	inConns [numKinds]int

	// cancels is the peer's requests to this node waiting or running.
	cancels cancels
	// refused is the peer's large messages this node refused lately.
	refused largeRefusals
	// urgentOver is set while a small urgent-lane frame of the peer's,
	// taken beyond the inbound limits, is held (takeUrgentOverdraft).
	urgentOver atomic.Bool
	// streamsHeld is what the peer's accepted stream connections hold of
	// inAccount (holdStreamConn).
	streamsHeld atomic.Int64
}

// newPeer makes id's entry; m and known are the membership's answer for
// id, asked before peersMu was taken: the membership is never asked under
// peersMu, since it may tell its watchers (membershipChanged, which takes
// peersMu) while holding the lock its Lookup takes. Once the entry is
// published, learnAddr asks again.
func newPeer(t *Transport, id cluster.NodeID, member bool, m cluster.Member, known bool) *peer {
	out := t.limitsOut.Load()
	p := &peer{id: id, t: t,
		outAccount: t.outBudget.Root().Child(out.PerPeer, false),
		inAccount:  t.inBudget.Root().Child(t.limitsIn.Load().PerPeer, false)}
	p.outAccount.SetReserve(responseReserve(out.PerPeer, t.cfg.Memory.MaxMessageSize))
	p.ctx, p.cancel = context.WithCancelCause(t.ctx)
	p.member.Store(member)
	if known {
		addr := m.Addr
		p.addr.Store(&addr)
	}
	return p
}

// learnAddr asks the membership for the address of p, an entry just
// published (peersMu not held), and takes it unless an event did since:
// a change told before the entry was published found no entry, but the
// membership changes before it tells, so this Lookup sees it.
func (p *peer) learnAddr() {
	made := p.addr.Load()
	m, ok := p.t.cfg.Membership.Lookup(p.id)
	if !ok || made != nil && *made == m.Addr {
		return
	}
	addr := m.Addr
	if p.addr.CompareAndSwap(made, &addr) && made != nil {
		p.moved(addr)
	}
}

// moved follows the peer to its new address addr: the lanes' connections
// and dials to another address end (their requests fail, the lanes
// redial), and so does the stream session, rather than go on with
// whatever now answers at the old address.
func (p *peer) moved(addr string) {
	for i := range p.lanes {
		if c := p.lanes[i].Load(); c != nil {
			c.moved(addr)
		}
	}
	p.streamsMoved(addr)
}

// lane returns the outbound connection for lane, creating it on first
// use. It returns nil once the peer is stopped.
func (p *peer) lane(lane routing.Lane) *outConn {
	if c := p.lanes[lane].Load(); c != nil {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped != nil {
		return nil
	}
	if c := p.lanes[lane].Load(); c != nil {
		return c
	}
	c := newOutConn(p.t, p, lane)
	p.lanes[lane].Store(c)
	return c
}

// startWriter starts c's writer goroutine unless it runs or the peer is
// stopped (whatever is queued then fails in stop).
func (p *peer) startWriter(c *outConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.running.Load() || p.stopped != nil || p.lanes[c.lane].Load() != c {
		// Not for a lane dropped for being idle either: its restart
		// timer may fire late.
		return
	}
	c.running.Store(true)
	c.done = make(chan struct{})
	p.t.wg.Add(1)
	go c.run()
}

// writerMayExit lets c's writer exit when, with running cleared, its
// queue is still empty: a producer that queued meanwhile either saw
// running set (and the writer sees its message here) or starts a new
// writer once this one has gone. With open, the connection it leaves
// open (parkIdle), a grant or refusal asked for, or the connection's
// death, keeps it too: the back channel sets them before it looks at
// running (wakeWriter). A lane whose connection was closed for being
// idle is dropped altogether — its counters live in the peer — and a
// message that comes later builds a new one.
func (p *peer) writerMayExit(c *outConn, open *liveConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.running.Store(false)
	n, _ := c.queue.pending()
	if (n > 0 || open != nil && (c.ctrlPending.Load() || open.dead.Load())) && p.stopped == nil {
		c.running.Store(true)
		return false
	}
	if open == nil && c.idleClosed && p.stopped == nil && c.queue.retireIfEmpty(errRetired) {
		p.coalMu.Lock()
		c.strategyMu.Lock()
		addCoalescing(&p.retiredCoalescing[c.lane], c.strategy.Stats())
		c.strategyMu.Unlock()
		p.lanes[c.lane].CompareAndSwap(c, nil)
		p.coalMu.Unlock()
		c.cancel()
		// A Send waiting for room on this lane (enqueue) waits on stop:
		// it goes on to the lane's successor, which stop reaches when
		// the peer leaves. Nothing else closes it once the lane is gone.
		select {
		case <-c.stop:
		default:
			close(c.stop)
		}
	}
	close(c.done)
	return true
}

// errRetired refuses a message to a lane dropped for being idle: its
// sender tries again on the lane's successor.
var errRetired = errors.New("transport: lane retired")

// writerExited marks c's writer gone after a stop.
func (p *peer) writerExited(c *outConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.running.Store(false)
	close(c.done)
}

// stop makes every writer of the peer exit, waits for them, and fails
// whatever they held with err; it ends the peer's file transfers and
// streams from this node too (ctx).
func (p *peer) stop(err error) {
	p.stopOnce.Do(func() { p.finishStop(p.beginStop(err)) })
}

// stopThen is stop for a caller that must not wait for the writers: it
// tells them to exit, and ends the peer's transfers and streams, at once;
// a goroutine of the transport's waits for the writers, fails what they
// held, and calls then. A Leave stops its peer so unless the membership
// is a cluster.LookupFromWatch that lets watchers look up: a membership
// may tell its watchers while holding the lock its Lookup takes, and a
// writer that is dialling asks Lookup for the address.
func (p *peer) stopThen(err error, then func()) {
	p.stopOnce.Do(func() {
		conns, running := p.beginStop(err)
		p.t.wg.Add(1)
		go func() {
			defer p.t.wg.Done()
			p.finishStop(conns, running)
			then()
		}()
	})
}

// beginStop refuses new work and tells every writer of the peer to exit;
// it returns the lanes and the done channels of the writers running.
func (p *peer) beginStop(err error) (conns []*outConn, running []chan struct{}) {
	p.mu.Lock()
	if p.stopped == nil {
		p.stopped = err
	}
	for i := range p.lanes {
		c := p.lanes[i].Load()
		if c == nil {
			continue
		}
		conns = append(conns, c)
		select {
		case <-c.stop:
		default:
			close(c.stop)
			c.cancel() // a dial in progress gives up at once
		}
		if conn := c.live.Load(); conn != nil {
			conn.kill("stopped") // a writer blocked in a write returns
		}
		if c.running.Load() {
			running = append(running, c.done)
		}
	}
	p.mu.Unlock()
	p.cancel(p.stopped) // first, so that a stream its session's close ends can tell why
	p.closeStreams()
	return conns, running
}

// finishStop waits for the writers beginStop told to exit, and fails what
// they held.
func (p *peer) finishStop(conns []*outConn, running []chan struct{}) {
	for _, done := range running {
		<-done
	}
	reason := reasonOf(p.stopped)
	for _, c := range conns {
		// No writer runs any more, and none can start: what is left is
		// this goroutine's to fail.
		for _, b := range c.queue.shut(p.stopped) {
			c.failBatch(b, reason, p.stopped)
		}
		c.large.failAll(&c.queue, reason, p.stopped, c)
		c.restart.Stop()
		// Under the writer's role: a writer that parked left its
		// connection open, and a producer may be writing to it.
		c.writeMu.Lock()
		c.closeConn("stopped")
		c.writeMu.Unlock()
	}
	// A Shutdown waiting for these queues (the peer left while its
	// messages waited) must look again, or it waits out its context.
	p.t.signalDrained()
}

// redialNow makes the peer's writers that wait to reconnect try at once.
func (p *peer) redialNow() {
	for i := range p.lanes {
		if c := p.lanes[i].Load(); c != nil {
			c.redialNow()
		}
	}
}

// reconnected is called when the peer opens a connection to this node:
// writers waiting to reconnect to it try at once, but for those it has
// just refused for want of room (refusedBusy), and connections to it that
// have been silent are replaced.
func (p *peer) reconnected() {
	for i := range p.lanes {
		if c := p.lanes[i].Load(); c != nil {
			c.dropIfSilent()
			if !c.refusedBusy.Load() {
				c.redialNow()
			}
		}
	}
}

// retireIfQuiet makes p refuse messages with err if it holds nothing (see
// quiet), in one step under p.mu, and reports whether it did. Checked
// apart, a Send that already held p's entry could queue a message between
// the check and the stop, which would then fail it, on counters that the
// janitor had already folded into the strangers' totals. Now such a Send
// either queued first, and p is not quiet, or is refused with err (its
// lanes' queues retired, p.lane returning none) and tries again.
//
// The janitor asks with peersMu held: p.mu is only tried, and an entry
// whose mu is held is left for the next sweep. The holder may be the
// coalescing factory, user code, run while a lane is made, reading Stats,
// which waits for peersMu: waiting for p.mu here, the janitor and the
// factory would wait for each other for good.
func (p *peer) retireIfQuiet(err error) bool {
	if !p.mu.TryLock() {
		return false
	}
	defer p.mu.Unlock()
	if p.stopped != nil || !p.quiet() {
		return false
	}
	var retired []*outConn
	for i := range p.lanes {
		c := p.lanes[i].Load()
		if c == nil {
			continue
		}
		if !c.queue.retireIfEmpty(err) { // a message queued since quiet looked
			for _, r := range retired {
				r.queue.unretire(err)
			}
			return false
		}
		retired = append(retired, c)
	}
	p.stopped = err
	return true
}

// quiet reports whether the peer holds nothing: no queued or pending
// message, no connection, no capacity, no open stream.
func (p *peer) quiet() bool {
	for i := range p.lanes {
		if c := p.lanes[i].Load(); c != nil && (c.running.Load() || c.live.Load() != nil || c.queue.held() > 0) {
			return false
		}
	}
	return p.outAccount.Used() == 0 && p.inAccount.Used() == 0 && p.streamedHandlers.Load() == 0 &&
		p.streams.in.Load() == 0 && p.streams.out.Load() == 0 && p.inConnsTotal() == 0
}

func (p *peer) inConnsTotal() int {
	p.t.inboundMu.Lock()
	defer p.t.inboundMu.Unlock()
	n := 0
	for _, k := range p.inConns {
		n += k
	}
	return n
}

// leftErr returns err, from a call that a peer's stop may have cut off (a
// file transfer, a stream), marked ErrPeerLeft when ctx, the peer's
// (peer.ctx), says that the peer left the membership: the caller learns
// why, as a Request waiting for the peer does.
func leftErr(ctx context.Context, err error) error {
	if err == nil || err == io.EOF || errors.Is(err, ErrPeerLeft) {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrPeerLeft) {
		return fmt.Errorf("%w: %w", ErrPeerLeft, err)
	}
	return err
}

// stopErrIfStopped returns why the peer stopped, or nil while it runs.
func (p *peer) stopErrIfStopped() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *peer) stopErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped == nil {
		return ErrClosed
	}
	return p.stopped
}

// peerFor returns the peer's state, creating it. With mustExist it first
// checks that the membership knows the peer.
func (t *Transport) peerFor(id cluster.NodeID, mustExist bool) (*peer, error) {
	if id == t.cfg.NodeID {
		// Its own listener would refuse the handshake (RefusedSelf) after
		// a dial, and a one-way message, accepted, would be dropped later.
		return nil, errOwnID
	}
	if p := (*t.peersView.Load())[id]; p != nil {
		if mustExist && !p.member.Load() && !t.isMember(id) {
			// A stranger's entry (it connected to this node): no more a
			// peer to send to than one without an entry.
			return nil, ErrUnknownPeer
		}
		return p, nil
	}
	m, known := t.cfg.Membership.Lookup(id)
	if mustExist && !known {
		return nil, ErrUnknownPeer
	}
	t.peersMu.Lock()
	if t.closing.Load() {
		t.peersMu.Unlock()
		return nil, ErrClosed
	}
	p := t.peers[id]
	made := p == nil
	if made {
		p = newPeer(t, id, known, m, known)
		t.addPeerLocked(p)
	}
	t.peersMu.Unlock()
	if made {
		p.learnAddr()
	}
	return p, nil
}

// publishPeers refreshes peersView; peersMu must be held for writing.
func (t *Transport) publishPeers() {
	view := maps.Clone(t.peers)
	t.peersView.Store(&view)
}

// leaveIsLate reports whether a Leave of id is told after the member
// came back, when the membership lets its watchers ask (see
// cluster.LookupFromWatch). Its Join follows; acted on, the Leave would
// fail requests sent since the member came back, which it is handling,
// and a caller that retries on ErrPeerLeft would run them twice.
func (t *Transport) leaveIsLate(id cluster.NodeID) bool {
	lf, ok := t.cfg.Membership.(cluster.LookupFromWatch)
	if !ok || !lf.WatchersMayLookup() {
		return false
	}
	if _, back := lf.Lookup(id); back {
		t.log.Debug("internode: ignoring a Leave told after the member came back", "peer", id)
		return true
	}
	return false
}

// latestAddr returns the address the membership gives now for the member
// an event told of, where watchers may ask it (cluster.LookupFromWatch),
// else the event's. An event may be behind the member map: a peer that
// moved twice at once is at its second address when the first is told,
// and the lanes, which dial what Lookup answers, may be connected there
// already; following the event would end those good connections, and the
// requests written on them.
func (t *Transport) latestAddr(m cluster.Member) string {
	lf, ok := t.cfg.Membership.(cluster.LookupFromWatch)
	if !ok || !lf.WatchersMayLookup() {
		return m.Addr
	}
	if now, ok := lf.Lookup(m.ID); ok {
		return now.Addr
	}
	return m.Addr // gone since: its Leave follows
}

// membershipChanged stops a departed peer's writers and fails what waits
// for it.
func (t *Transport) membershipChanged(ev cluster.Event) {
	if ev.Type != cluster.Leave {
		// A member that appears or changes may be one this node is
		// waiting to reconnect to: try at once rather than after the
		// backoff. The entry is looked up under peersMu: one being made
		// meanwhile (peerFor, claimConn) either is found here or is
		// published after, and then asks the membership again
		// (learnAddr), which changes before it tells.
		t.peersMu.Lock()
		p := t.peers[ev.Member.ID]
		t.peersMu.Unlock()
		if p != nil {
			t.promote(p) // an entry made before it joined
			addr := t.latestAddr(ev.Member)
			p.addr.Store(&addr)
			// Whether or not p.addr changed: a peer that went to B and
			// back to A, its events behind (or merged into one), is at
			// A, where p.addr was, but a lane may have dialled B
			// meanwhile. moved ends only what is not at addr.
			p.moved(addr)
			p.redialNow()
		}
		return
	}
	id := ev.Member.ID
	if t.leaveIsLate(id) {
		return
	}
	t.peersMu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	if p != nil {
		if !p.member.Load() {
			// A stranger's entry (a Join and Leave that reached this
			// node as one Leave): its counts stay the strangers', and
			// it departs with the ID's own.
			t.claimLocked(p)
		}
		t.addDeparted(p)
	}
	t.publishPeers()
	t.peersMu.Unlock()
	// Waiting requests fail first: stopping the writers may take a moment.
	// Only those handed to the entry that ends: a request still on its
	// way to one meets the stopped entry and fails there, or, the node
	// having joined again meanwhile, its new entry, which takes it. Once
	// more after the stop, for a request queued meanwhile and written
	// before the stop took the lane's queue: its connection ended with
	// the stop, its response with it.
	if p != nil {
		t.calls.failEntry(p, ErrPeerLeft)
		if lf, ok := t.cfg.Membership.(cluster.LookupFromWatch); ok && lf.WatchersMayLookup() {
			// The writers are waited for, so that OnDropped has been told
			// of every message dropped for the Leave before the member
			// may be told as joined again (a user replaying hints on a
			// Join would miss those told after it). A writer dialling
			// asks Lookup, which this membership answers while it tells.
			p.stop(ErrPeerLeft)
			t.calls.failEntry(p, ErrPeerLeft)
		} else {
			// Not waited for: a writer may be asking the membership,
			// which may hold the lock it asks under while it tells of
			// this Leave.
			p.stopThen(ErrPeerLeft, func() { t.calls.failEntry(p, ErrPeerLeft) })
		}
	}
	t.closeInboundFrom(id)
}

// closeInboundFrom closes the message connections id opened to this node:
// a node that left is not served. (With AcceptUnknownPeers it may connect
// again, as a stranger.) Its stream and file connections end with their
// handlers.
func (t *Transport) closeInboundFrom(id cluster.NodeID) {
	var from []*inConn
	t.inboundMu.Lock()
	for ic := range t.inConns {
		if ic.from == id {
			from = append(from, ic)
		}
	}
	t.inboundMu.Unlock()
	for _, ic := range from {
		ic.kill()
	}
}

// addDeparted keeps p's counts for Stats. A node that left before keeps
// one entry: the earlier one's counts move into p, so that a node leaving
// and rejoining again and again holds one entry, not one a Leave. An
// earlier entry that may still count — a handler of its still running,
// whose response is yet to be written or dropped, a connection of its not
// yet ended — stays listed beside p (Stats sums them) until it is quiet,
// when the janitor moves what it counted since into p's successor
// (pruneDeparted); dropped at once, what it counted after the move would
// be counted nowhere. The departed entries of nodes that did not come
// back are kept for the latest maxDepartedIDs of them (capDeparted).
// peersMu must be held for writing.
func (t *Transport) addDeparted(p *peer) {
	kept := t.departed[:0]
	for _, old := range t.departed {
		if old.id != p.id {
			kept = append(kept, old)
			continue
		}
		if !old.quiet() { // asked first: once quiet, it counts nothing more
			kept = append(kept, old)
		}
		p.takeCounts(old)
	}
	clear(t.departed[len(kept):])
	t.departed = append(kept, p)
	t.capDeparted()
}

// pruneDeparted drops the earlier entries of departed nodes that have
// become quiet, moving what they counted since addDeparted into the
// node's latest entry. peersMu must be held for writing.
func (t *Transport) pruneDeparted() {
	if len(t.departed) < 2 {
		return // one entry is its ID's latest: nothing to fold (and no map each sweep)
	}
	latest := map[cluster.NodeID]*peer{}
	for _, p := range t.departed {
		latest[p.id] = p // the latest entry of an ID is the last listed
	}
	kept := t.departed[:0]
	for _, p := range t.departed {
		if last := latest[p.id]; last != p && p.quiet() {
			last.takeCounts(p)
			continue
		}
		kept = append(kept, p)
	}
	clear(t.departed[len(kept):])
	t.departed = kept
	t.capDeparted()
}

// maxDepartedIDs is how many nodes that left and have no entry now keep
// their departed entries, under their own IDs, in Stats (DepartedPeer).
const maxDepartedIDs = 256

// capDeparted keeps the departed entries of at most maxDepartedIDs nodes
// that have no entry now (that left and did not come back): beyond that,
// those of the nodes that left first, once all quiet, are dropped, their
// counts moved to the totals Stats reports under DepartedPeer. Each entry
// holds its lanes, counters and histograms (some 6.5 KB after traffic both
// ways): kept for every ID, a cluster whose nodes take a new ID at each
// start would grow the node's memory, and its Stats and metric series, at
// each restart for as long as it runs. A node that left and came back
// keeps its departed entry beside its new one, which bounds it. peersMu
// must be held for writing.
func (t *Transport) capDeparted() {
	if len(t.departed) <= maxDepartedIDs {
		return // within the bound whatever the IDs (and no map each sweep)
	}
	gone := map[cluster.NodeID]bool{} // an ID with no entry now → all its departed entries quiet
	var order []cluster.NodeID        // those IDs, the first to leave first
	for _, p := range t.departed {
		if t.peers[p.id] != nil {
			continue
		}
		if _, seen := gone[p.id]; !seen {
			gone[p.id] = true
			order = append(order, p.id)
		}
	}
	excess := len(order) - maxDepartedIDs
	if excess <= 0 {
		return
	}
	for _, p := range t.departed {
		if quiet, ok := gone[p.id]; ok && quiet && !p.quiet() {
			gone[p.id] = false // it may count yet: kept for now (the janitor tries again)
		}
	}
	drop := map[cluster.NodeID]bool{}
	for _, id := range order {
		if excess == 0 {
			break
		}
		if gone[id] {
			drop[id] = true
			excess--
		}
	}
	kept := t.departed[:0]
	for _, p := range t.departed {
		if drop[p.id] {
			t.departedTotals.add(p, true)
			continue
		}
		kept = append(kept, p)
	}
	clear(t.departed[len(kept):])
	t.departed = kept
}

// takeCounts moves old's counts into p, leaving old's at zero, so that a
// count is never in both, and what old counts later is not lost while
// old is listed. peersMu must be held for writing.
func (p *peer) takeCounts(old *peer) {
	for lane := range routing.NumLanes {
		p.outbound[lane].addFrom(&old.outbound[lane], true)
		p.inbound[lane].addFrom(&old.inbound[lane], true)
		p.sendMax[lane].Observe(old.sendMax[lane].Max())
		p.recvMax[lane].Observe(old.recvMax[lane].Max())
		if old.queuesMeasured[lane].Load() {
			p.queuesMeasured[lane].Store(true)
		}
	}
}

// measured records that a socket queue depth was read on lane.
func (p *peer) measured(lane routing.Lane) {
	if !p.queuesMeasured[lane].Load() {
		p.queuesMeasured[lane].Store(true)
	}
}

// addCoalescing adds the counts of s to sum, and takes its current
// figures (strategy, window, average gap) as sum's.
func addCoalescing(sum *coalescing.Stats, s coalescing.Stats) {
	sum.Strategy, sum.Window, sum.AverageGap = s.Strategy, s.Window, s.AverageGap
	sum.Writes += s.Writes
	sum.Messages += s.Messages
	sum.Bytes += s.Bytes
	sum.RequestedWait += s.RequestedWait
	sum.ObservedWait += s.ObservedWait
	for i := range s.BatchHistogram {
		sum.BatchHistogram[i] += s.BatchHistogram[i]
	}
	sum.Waited += s.Waited
	sum.EarlyFlushes += s.EarlyFlushes
	sum.WindowGrowths += s.WindowGrowths
	sum.WindowShrinks += s.WindowShrinks
}
