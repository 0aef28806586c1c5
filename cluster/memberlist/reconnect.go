package memberlist

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
)

// Reconnection, after hashicorp/serf's reconnect loop.
//
// Memberlist probes, gossips and pushes/pulls state only with members it
// believes alive (dead ones get gossip for GossipToTheDeadTime at most). After
// a partition longer than failure detection, each side has declared the other
// dead and nothing ever makes them talk again. So a Membership remembers the
// members that failed (left without Leave: declared dead) and a goroutine
// periodically tries to join them again, once the node at a failed
// member's address answers a ping by the member's name. A successful join
// is a push/pull of full state: each side learns that the other believes
// it dead and refutes with a higher incarnation, after which memberlist's
// own gossip and probes spread the news; a member is forgotten when
// memberlist reports it alive again, or after ReconnectTimeout.

// reconnector holds a Membership's reconnection state. Its fields are set
// before the loop starts and not changed afterwards, except failed, which
// Membership.mu guards.
type reconnector struct {
	interval time.Duration // how often to try; <= 0: disabled, nothing is remembered
	timeout  time.Duration // how long a failed member is remembered
	seeds    []string      // tried when this node is alone; own gossip address removed

	// join makes one attempt to join through addr; Join binds it to
	// memberlist's Join, which bounds it by ml.Config.TCPTimeout (dial, then
	// the exchange). answers returns nil if the node at addr answers to
	// id's name; Join binds it to memberlist's Ping, bounded by
	// ml.Config.ProbeTimeout, and nil skips the check. alone reports
	// whether memberlist knows no other live node. intn returns a random
	// index in [0, n). Tests replace them.
	join    func(addr string) error
	answers func(id cluster.NodeID, addr string) error
	alone   func() bool
	intn    func(n int) int

	failed map[cluster.NodeID]failedMember // guarded by Membership.mu

	stop     chan struct{} // closed by Leave or Close: the loop must exit
	stopOnce sync.Once
	started  bool          // the loop was started; set before Join returns
	done     chan struct{} // closed when the started loop has exited
}

// failedMember is a member remembered for reconnection.
type failedMember struct {
	addr  string    // its gossip address, "ip:port"
	since time.Time // when it was declared failed
	// claimed is the gossip addresses at which other processes claimed
	// the member's ID before it failed (Membership.claimed), the latest
	// first: most likely one is the member itself, restarted there.
	claimed []string
}

// reconnectTarget is one address to join through: a failed member (id set)
// or a seed (id empty).
type reconnectTarget struct {
	id   cluster.NodeID
	addr string
}

// newReconnector returns a reconnector for cfg, which should have its
// defaults applied (a zero ReconnectInterval disables it), without join and
// alone.
func newReconnector(cfg Config) reconnector {
	return reconnector{
		interval: cfg.ReconnectInterval,
		timeout:  cfg.ReconnectTimeout,
		seeds:    slices.Clone(cfg.Seeds),
		intn:     rand.IntN,
		failed:   make(map[cluster.NodeID]failedMember),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

func (r *reconnector) enabled() bool { return r.interval > 0 }

// rememberLocked records that member id, gossiping on addr, failed now;
// claimed is where other processes claimed its ID meanwhile, if anywhere.
// Membership.mu must be held.
func (r *reconnector) rememberLocked(id cluster.NodeID, addr string, claimed []string) {
	if r.enabled() {
		r.failed[id] = failedMember{addr: addr, since: time.Now(), claimed: claimed}
	}
}

// forgetLocked drops id, which is alive again or left gracefully.
// Membership.mu must be held.
func (r *reconnector) forgetLocked(id cluster.NodeID) {
	delete(r.failed, id)
}

// startReconnecting starts the loop, if reconnection is enabled.
func (m *Membership) startReconnecting() {
	if !m.rc.enabled() {
		return
	}
	m.rc.started = true
	go m.reconnectLoop()
}

// stopReconnecting tells the loop to exit without waiting for it.
func (m *Membership) stopReconnecting() {
	m.rc.stopOnce.Do(func() { close(m.rc.stop) })
}

// waitReconnecting waits for the loop to exit after stopReconnecting: at
// most for the join attempt in progress, if any.
func (m *Membership) waitReconnecting() {
	if m.rc.started {
		<-m.rc.done
	}
}

// reconnectLoop runs a reconnection round every interval until stopped.
func (m *Membership) reconnectLoop() {
	defer close(m.rc.done)
	tick := time.NewTicker(m.rc.interval)
	defer tick.Stop()
	for {
		select {
		case <-m.rc.stop:
			return
		case <-tick.C:
		}
		m.reconnectRound()
	}
}

// reconnectRound tries the round's targets in order until one join
// succeeds or the loop is stopped.
func (m *Membership) reconnectRound() {
	for _, target := range m.reconnectTargets(time.Now()) {
		select {
		case <-m.rc.stop:
			return
		default:
		}
		what := "seed " + target.addr
		if target.id != "" {
			what = "failed member " + string(target.id) + " at " + target.addr
		}
		// A failed member's address may now be another node's, even
		// another cluster's (addresses are reused): joining it would
		// merge the two clusters for good. Only the member answers a
		// ping by its name (another node drops it), so the address is
		// joined only when the member has just answered there.
		if target.id != "" && m.rc.answers != nil {
			if err := m.rc.answers(target.id, target.addr); err != nil {
				m.logger.Printf("[DEBUG] memberlist: reconnect: no answer from %s under its name: %v", what, err)
				continue
			}
		}
		if err := m.rc.join(target.addr); err != nil {
			// memberlist's errors span lines ("1 error occurred:\n\t* ...").
			msg := strings.Join(strings.Fields(err.Error()), " ")
			m.logger.Printf("[DEBUG] memberlist: reconnect: cannot join %s: %s", what, msg)
			continue
		}
		if target.id == "" && m.rc.alone() {
			// A seed that answers without this node learning of anyone
			// is this node itself under another name (a host name,
			// another of its IPs): no success, try the next target.
			m.logger.Printf("[DEBUG] memberlist: reconnect: %s answered, but this node is still alone", what)
			continue
		}
		m.logger.Printf("[INFO] memberlist: reconnect: joined %s", what)
		return
	}
}

// reconnectTargets forgets the failed members remembered for longer than
// the timeout and returns the round's targets: the seeds, if this node is
// alone, then one remembered member chosen at random: the addresses where
// other processes claimed its ID before it failed, if any, then its own.
func (m *Membership) reconnectTargets(now time.Time) []reconnectTarget {
	var targets []reconnectTarget
	if len(m.rc.seeds) > 0 && m.rc.alone() { // not under mu: it takes memberlist's lock
		for _, seed := range m.rc.seeds {
			targets = append(targets, reconnectTarget{addr: seed})
		}
	}

	var expired []cluster.NodeID
	m.mu.Lock()
	ids := make([]cluster.NodeID, 0, len(m.rc.failed))
	for id, f := range m.rc.failed {
		if now.Sub(f.since) >= m.rc.timeout {
			delete(m.rc.failed, id)
			expired = append(expired, id)
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) > 0 {
		slices.Sort(ids) // map order is random already, but intn alone decides
		id := ids[m.rc.intn(len(ids))]
		f := m.rc.failed[id]
		for _, claimed := range f.claimed {
			if claimed != f.addr {
				// A process that claimed its ID: probably it restarted
				// there. Only the one that answers by its name is joined.
				targets = append(targets, reconnectTarget{id: id, addr: claimed})
			}
		}
		targets = append(targets, reconnectTarget{id: id, addr: f.addr})
	}
	m.mu.Unlock()

	for _, id := range expired {
		m.logger.Printf("[INFO] memberlist: reconnect: giving up on failed member %s after %v", id, m.rc.timeout)
	}
	return targets
}
