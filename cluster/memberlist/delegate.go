package memberlist

import (
	"slices"

	ml "github.com/hashicorp/memberlist"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

// delegate receives memberlist's callbacks for a Membership. It is a
// separate type so that the callbacks are not part of Membership's API.
//
// memberlist calls the EventDelegate methods one at a time, while holding
// its node lock: they must not block or call back into memberlist. They
// update the member map and queue an event; the dispatcher does the rest.
type delegate Membership

// maxClaims is how many addresses that claimed a member's ID are kept
// (Membership.claimed): each costs a failed member's reconnection round
// up to a ping's ProbeTimeout when nothing answers there.
const maxClaims = 3

var (
	_ ml.Delegate         = (*delegate)(nil)
	_ ml.EventDelegate    = (*delegate)(nil)
	_ ml.ConflictDelegate = (*delegate)(nil)
)

// NotifyConflict implements ml.ConflictDelegate: memberlist heard of a
// process gossiping existing's name at another address, other's, and
// ignored it because it takes existing for alive. Usually existing
// crashed and restarted at a new address before failure detection
// noticed: once it is declared dead, memberlist would take the new
// process, but it gossips the death only to the old address, so nothing
// tells the new process to refute it until a periodic push/pull
// (PushPullInterval, 30 s on a LAN). The other address is kept, so that
// the reconnection loop tries it as soon as existing has failed (observe).
// So are the last few before it: under churn, a member whose view is
// behind may gossip an alive message about an earlier process, at an
// address nothing answers, after the restarted process claimed the ID.
// Called under memberlist's node lock, like the EventDelegate methods.
func (d *delegate) NotifyConflict(existing, other *ml.Node) {
	id := cluster.NodeID(existing.Name)
	if id == d.self {
		d.logger.Printf("[WARN] memberlist: this node's ID %q is also gossiped at %s: an earlier process "+
			"not yet declared dead, or another node configured with the same ID", id, other.Address())
	} else {
		d.mu.Lock()
		if _, ok := d.members[id]; ok && !d.closed {
			addr := other.Address()
			claims := slices.DeleteFunc(slices.Clone(d.claimed[id]), func(a string) bool { return a == addr })
			claims = slices.Insert(claims, 0, addr)
			d.claimed[id] = claims[:min(len(claims), maxClaims)]
		}
		d.mu.Unlock()
	}
	if d.conflict != nil {
		d.conflict.NotifyConflict(existing, other)
	}
}

// NodeMeta implements ml.Delegate: this node's transport address.
func (d *delegate) NodeMeta(limit int) []byte {
	meta := *d.meta.Load()
	if len(meta) > limit { // cannot happen: addresses are checked against ml.MetaMaxSize
		return nil
	}
	return meta
}

// NotifyMsg implements ml.Delegate; internode sends no messages through
// memberlist.
func (*delegate) NotifyMsg([]byte) {}

// GetBroadcasts implements ml.Delegate; there are no user broadcasts.
func (*delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements ml.Delegate; there is no state to push and pull.
func (*delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements ml.Delegate.
func (*delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin implements ml.EventDelegate.
func (d *delegate) NotifyJoin(node *ml.Node) { d.observe(node, true) }

// NotifyUpdate implements ml.EventDelegate.
func (d *delegate) NotifyUpdate(node *ml.Node) { d.observe(node, true) }

// NotifyLeave implements ml.EventDelegate; memberlist calls it both for a
// graceful leave and for a node declared dead, and does not say which
// (node.State is not set): the leaving flag in the node's metadata does.
func (d *delegate) NotifyLeave(node *ml.Node) { d.observe(node, false) }

// observe applies memberlist's news about node, which memberlist reports up
// (alive) or gone, to the member map and the reconnection bookkeeping, and
// queues the resulting event, if any. A live node without valid metadata is
// treated as absent: it is logged and, if it was a member, it leaves.
func (d *delegate) observe(node *ml.Node, up bool) {
	id := cluster.NodeID(node.Name)
	meta, metaErr := decodeMeta(node.Meta)
	if metaErr == nil && id == "" {
		metaErr = errEmptyName
	}
	if metaErr == nil && len(id) > wire.MaxNameLength {
		metaErr = errLongName
	}
	member := up && metaErr == nil // a member as far as watchers know
	if up && metaErr != nil {
		d.logger.Printf("[WARN] memberlist: ignoring node %q at %s: %v", node.Name, node.Address(), metaErr)
	}
	// A node that goes away without its leaving flag failed, as far as this
	// node can tell; only internode members other than this node are
	// remembered for reconnection.
	failed := !up && metaErr == nil && !meta.leaving && id != d.self

	now := cluster.Member{ID: id}
	if member {
		now.Addr = meta.addr
	}

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	claims := d.claimed[id]
	if !up || slices.Contains(claims, node.Address()) {
		delete(d.claimed, id) // settled: gone, or a claimant taken
	}
	if failed {
		d.rc.rememberLocked(id, node.Address(), claims)
	} else {
		if f, ok := d.rc.failed[id]; ok && member && len(f.claimed) > 0 && !slices.Contains(f.claimed, node.Address()) {
			// Back, but perhaps only by a late alive message about an
			// earlier process (memberlist takes a dead node's new address
			// at once): should it fail again, where its ID was claimed
			// is still where it most likely restarted.
			d.claimed[id] = f.claimed
		}
		d.rc.forgetLocked(id) // alive again, or gone gracefully
	}
	old, known := d.members[id]
	var ev cluster.Event
	switch {
	case !member && known:
		delete(d.members, id)
		ev = cluster.Event{Type: cluster.Leave, Member: old}
	case member && !known:
		d.members[id] = now
		ev = cluster.Event{Type: cluster.Join, Member: now}
	case member && old != now:
		d.members[id] = now
		ev = cluster.Event{Type: cluster.Update, Member: now}
	default: // nothing a watcher can see has changed
		d.mu.Unlock()
		return
	}
	d.queue.push(ev)
	d.mu.Unlock()

	select {
	case d.wake <- struct{}{}:
	default: // the dispatcher has already been woken
	}
}
