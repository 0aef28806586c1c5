package memberlist

import (
	ml "github.com/hashicorp/memberlist"

	"github.com/internode/internode/cluster"
)

// delegate receives memberlist's callbacks for a Membership. It is a
// separate type so that the callbacks are not part of Membership's API.
//
// memberlist calls the EventDelegate methods one at a time, while holding
// its node lock: they must not block or call back into memberlist. They
// update the member map and queue an event; the dispatcher does the rest.
type delegate Membership

var (
	_ ml.Delegate      = (*delegate)(nil)
	_ ml.EventDelegate = (*delegate)(nil)
)

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
	if failed {
		d.rc.rememberLocked(id, node.Address())
	} else {
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
