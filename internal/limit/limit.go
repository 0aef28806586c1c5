// Package limit counts bytes against limits that can change at run time.
//
// A Limit is one pool of capacity. Tiered is the three tiers the transport
// uses on each side: a connection's own capacity first, then, for what does
// not fit, the peer's and the node's reserves together (all or nothing), as
// Cassandra's ResourceLimits do. A message gives back exactly what it took,
// tier by tier: a Grant records the split.
package limit

import (
	"sync"
	"sync/atomic"
)

// Limit is a pool of bytes. Safe for concurrent use.
type Limit struct {
	limit atomic.Int64
	using atomic.Int64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when capacity may have been freed
}

// New returns a limit of n bytes.
func New(n int64) *Limit {
	l := &Limit{}
	l.limit.Store(n)
	return l
}

// Limit returns the current limit in bytes.
func (l *Limit) Limit() int64 { return l.limit.Load() }

// Using returns the bytes allocated now.
func (l *Limit) Using() int64 { return l.using.Load() }

// SetLimit changes the limit at once. Lowering it below what is in use
// frees nothing: new allocations fail until enough is released.
func (l *Limit) SetLimit(n int64) {
	l.limit.Store(n)
	l.notify()
}

// TryAllocate takes n bytes if they fit under the limit.
func (l *Limit) TryAllocate(n int64) bool {
	for {
		using := l.using.Load()
		if using+n > l.limit.Load() {
			return false
		}
		if l.using.CompareAndSwap(using, using+n) {
			return true
		}
	}
}

// AllocateUpTo takes as many of n bytes as fit and returns how many.
func (l *Limit) AllocateUpTo(n int64) int64 {
	for {
		using := l.using.Load()
		free := max(l.limit.Load()-using, 0)
		take := min(n, free)
		if take == 0 {
			return 0
		}
		if l.using.CompareAndSwap(using, using+take) {
			return take
		}
	}
}

// Release gives back n bytes.
func (l *Limit) Release(n int64) {
	if n == 0 {
		return
	}
	if l.using.Add(-n) < 0 {
		panic("limit: released more than allocated")
	}
	l.notify()
}

// Changed returns a channel closed the next time capacity may have been
// freed (a Release or SetLimit), for callers that wait for room.
func (l *Limit) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

func (l *Limit) notify() {
	l.mu.Lock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.mu.Unlock()
}

// Grant is what one allocation took from each tier.
type Grant struct {
	Own     int64 // from the connection's own capacity
	Reserve int64 // from both the peer's and the node's reserve
}

// Total is the bytes granted.
func (g Grant) Total() int64 { return g.Own + g.Reserve }

// Tiered allocates from a connection's capacity, then from a peer reserve
// and a node reserve together.
type Tiered struct {
	Own, Peer, Node *Limit
}

// TryAllocate takes n bytes or nothing.
func (t Tiered) TryAllocate(n int64) (Grant, bool) {
	own := t.Own.AllocateUpTo(n)
	rest := n - own
	if rest == 0 {
		return Grant{Own: own}, true
	}
	if !t.Peer.TryAllocate(rest) {
		t.Own.Release(own)
		return Grant{}, false
	}
	if !t.Node.TryAllocate(rest) {
		t.Peer.Release(rest)
		t.Own.Release(own)
		return Grant{}, false
	}
	return Grant{Own: own, Reserve: rest}, true
}

// Add sums two grants.
func (g Grant) Add(o Grant) Grant { return Grant{Own: g.Own + o.Own, Reserve: g.Reserve + o.Reserve} }

// Release gives back exactly what g took.
func (t Tiered) Release(g Grant) {
	t.Own.Release(g.Own)
	if g.Reserve > 0 {
		t.Peer.Release(g.Reserve)
		t.Node.Release(g.Reserve)
	}
}

// Wait takes n bytes, waiting while they do not fit until done or stop is
// closed (either may be nil); it reports false if one closed first.
func (t Tiered) Wait(n int64, done, stop <-chan struct{}) (Grant, bool) {
	for {
		if g, ok := t.TryAllocate(n); ok {
			return g, true
		}
		// Take the change signals first, then retry, so that a release
		// between the failed attempt and the wait is not missed.
		own, peer, node := t.Own.Changed(), t.Peer.Changed(), t.Node.Changed()
		if g, ok := t.TryAllocate(n); ok {
			return g, true
		}
		select {
		case <-own:
		case <-peer:
		case <-node:
		case <-done:
			return Grant{}, false
		case <-stop:
			return Grant{}, false
		}
	}
}
