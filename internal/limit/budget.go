package limit

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Budget bounds the bytes one side of a node holds, in nested accounts:
// the node's own account at the root, a peer's under it, a connection's
// under the peer's. Taking n bytes from an account takes them from it and
// from every account above it, all or nothing, so the root never holds
// more than its limit and a peer never more than its own, however many
// connections it has: a child's capacity is carved out of its parent's,
// not added to it.
//
// Waiting is first come, first served: once a waiter is blocked at an
// account (its bytes do not fit there, the lowest such on its way up),
// later allocations that need that account queue behind it, so a stream
// of small allocations cannot starve a large one — except those that
// cannot wait (TryTakeAhead, Overdraw): a steady stream of them can keep
// a waiter waiting, which is for its context to bound. The accounts above it
// stay open to others until the waiter fits below them: a connection
// waiting for its own room does not hold back its siblings' room at its
// peer. A waiter costs nothing while it waits: it is granted by
// whoever frees enough room, never woken to retry.
//
// An account may keep a reserve: the last bytes under its limit, which
// only allocations that cannot wait (TryTakeAhead, the overdraws) may
// take. Outbound, a node's own sends leave it to the responses it owes
// its peers.
//
// An allocation that fits while no one waits takes its bytes with atomic
// operations alone: it looks at the parents, then takes account by account
// from the bottom up, undoing what it took if a parent filled meanwhile.
// The budget's lock orders only the waiters.
//
// A Budget and its accounts are safe for concurrent use.
type Budget struct {
	mu      sync.Mutex
	root    Account
	waiters []*Waiter // FIFO
	// queued is how many allocations are queued or about to be: raised
	// before an allocation looks for room under mu. TryTake takes without
	// the lock only while it is zero, and one that gave bytes back looks
	// at it again: either the waiter saw the bytes back, or the taker sees
	// the waiter and grants it.
	queued atomic.Int64
	// blocked lists the accounts marked blocked by the last scan of the
	// waiters, so that the next scan can clear them.
	blocked []*Account
}

// NewBudget returns a budget whose root account holds at most limit bytes.
func NewBudget(limit int64) *Budget {
	b := &Budget{}
	b.root.budget = b
	b.root.limit.Store(limit)
	return b
}

// Root returns the budget's top account.
func (b *Budget) Root() *Account { return &b.root }

// Waiting returns how many allocations wait for room now.
func (b *Budget) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}

// Account is one level of a Budget.
type Account struct {
	budget *Budget
	parent *Account
	// limit is written under budget.mu and read without it. used changes
	// by compare-and-swap in take, with the lock or without it, and by
	// adds under it (Overdraw, Release); it is read without it.
	limit atomic.Int64
	used  atomic.Int64
	// reserve is the part of limit that only allocations taken ahead
	// may use (SetReserve); written under budget.mu, read without it.
	reserve atomic.Int64
	// floor is what the account held when its limit was last lowered
	// below that, or what a soft take left it holding above its limit,
	// less what was given back since (SetLimit, take, Release); 0 once it
	// holds no more than its limit. TryOverdraw's margin counts from it
	// while it is above the limit. Written under budget.mu, but raised by
	// a soft take without it (raiseFloor); read without it.
	floor atomic.Int64
	// soft lets an empty account take one allocation larger than its
	// limit (its parents still bound it): a connection whose queue is
	// empty can always take one message of any admissible size.
	soft bool
	// blockedBy counts the waiters that the last scan found blocked at
	// this account; allocations through it queue behind them.
	blockedBy int
}

// Child returns a new account under a, holding at most limit bytes. With
// soft, an empty child may take one allocation above its limit.
func (a *Account) Child(limit int64, soft bool) *Account {
	c := &Account{budget: a.budget, parent: a, soft: soft}
	c.limit.Store(limit)
	return c
}

// Used returns the bytes the account holds now, its children's included.
func (a *Account) Used() int64 { return a.used.Load() }

// Limit returns the account's limit.
func (a *Account) Limit() int64 { return a.limit.Load() }

// SetLimit changes the account's limit at once. Lowering it below what is
// held frees nothing: allocations wait or fail until enough is released,
// and TryOverdraw's margin counts from what is held (never more than the
// limit or floor in force before) until that much is given back.
// Waiters that can never fit any more fail.
func (a *Account) SetLimit(n int64) { a.set(n, -1) }

// SetLimitAndReserve changes the account's limit and its reserve
// (SetReserve) together: waiters are judged against both new values, never
// against the new limit with the old reserve.
func (a *Account) SetLimitAndReserve(n, r int64) { a.set(n, max(r, 0)) }

// set changes the account's limit to n and, unless r is negative, its
// reserve to r.
func (a *Account) set(n, r int64) {
	b := a.budget
	b.mu.Lock()
	if used := a.used.Load(); used > n {
		a.floor.Store(min(used, max(a.limit.Load(), a.floor.Load())))
	} else {
		a.floor.Store(0)
	}
	a.limit.Store(n)
	if r >= 0 {
		a.reserve.Store(r)
	}
	ready := b.scanLocked()
	b.mu.Unlock()
	signal(ready)
}

// SetReserve keeps the last r bytes of the account's limit for
// allocations that cannot wait (TryTakeAhead, TryOverdraw, Overdraw):
// others fit only in the limit less r. r at or above the limit leaves
// them nothing; waiters that can then never fit fail.
func (a *Account) SetReserve(r int64) {
	b := a.budget
	b.mu.Lock()
	a.reserve.Store(r)
	ready := b.scanLocked()
	b.mu.Unlock()
	signal(ready)
}

// room reports whether n more bytes fit in a alone.
func (a *Account) room(n int64) bool { return a.fits(a.used.Load(), n) }

// fits reports whether n more bytes fit in a alone, outside its reserve,
// when it holds used.
func (a *Account) fits(used, n int64) bool {
	return used+n <= a.limit.Load()-a.reserve.Load() || a.soft && used == 0
}

// fitsAhead reports whether n more bytes fit in a alone, its reserve
// included, when it holds used (TryTakeAhead).
func (a *Account) fitsAhead(used, n int64) bool {
	return used+n <= a.limit.Load() || a.soft && used == 0
}

// fitsOver reports whether n more bytes leave a, holding used, at most
// over bytes beyond its limit, or beyond its floor when that is higher
// (TryOverdraw; no soft rule).
func (a *Account) fitsOver(used, n, over int64) bool {
	limit := max(a.limit.Load(), a.floor.Load())
	// used+n-limit <= over, written so that a limit near MaxInt64 does not
	// overflow.
	return used+n <= limit || used+n-limit <= over
}

// take takes n bytes from a and every parent if they fit in each (as
// mode says: by fits, fitsAhead or fitsOver with over), all or nothing, with atomic
// operations alone, and reports whether it did. Failing at a parent, it
// gives back what it took below; it reports in undone whether it did, as
// bytes given back without the lock may let a waiter in (see TryTake).
//
// It looks at every parent before it takes from any account: a take that
// a parent refuses would otherwise hold bytes below it for a moment, and a
// take that looked there then would be refused bytes that were never
// held. (Two takes may still pass the look together and one lose the
// parent's last bytes to a third; the loser's bytes below are then held
// for that moment.)
func (a *Account) take(n, over int64, mode takeMode) (ok, undone bool) {
	for x := a.parent; x != nil; x = x.parent { // a itself: by its CAS below
		if !x.admits(x.used.Load(), n, over, mode) {
			return false, false
		}
	}
	soft := false // the soft rule took n above an account's limit
	for x := a; x != nil; x = x.parent {
		for {
			used := x.used.Load()
			if !x.admits(used, n, over, mode) {
				for y := a; y != x; y = y.parent {
					y.used.Add(-n)
				}
				return false, x != a
			}
			if x.used.CompareAndSwap(used, used+n) {
				soft = soft || x.soft && used == 0 && mode != overdrawn && n > x.limit.Load()
				break
			}
		}
	}
	if soft { // rare: walked again rather than slow every take with a list
		for x := a; x != nil; x = x.parent {
			if x.soft && n > x.limit.Load() {
				x.raiseFloor(n)
			}
		}
	}
	return true, false
}

// raiseFloor makes the account's floor at least n: what a soft take left
// it holding above its limit, from which TryOverdraw's margin counts until
// it is given back (Release lowers the floor as bytes come back). Raised
// without the budget's lock, as take runs with or without it: the floor
// only grows here, and a Release that looked before it was raised at most
// clears it early, which refuses an overdraw rather than allowing one.
func (a *Account) raiseFloor(n int64) {
	for {
		f := a.floor.Load()
		if f >= n || a.floor.CompareAndSwap(f, n) {
			return
		}
	}
}

// takeMode says which room a take may use.
type takeMode uint8

const (
	inTurn    takeMode = iota // the limit less the reserve (fits)
	ahead                     // the whole limit (fitsAhead)
	overdrawn                 // over bytes beyond the limit (fitsOver)
)

// admits reports whether a, holding used, admits n more bytes in mode.
func (a *Account) admits(used, n, over int64, mode takeMode) bool {
	switch mode {
	case ahead:
		return a.fitsAhead(used, n)
	case overdrawn:
		return a.fitsOver(used, n, over)
	}
	return a.fits(used, n)
}

// possible reports whether n bytes could ever fit in a and its parents
// under their current limits and reserves.
func (a *Account) possible(n int64) bool {
	for x := a; x != nil; x = x.parent {
		if n > x.limit.Load()-x.reserve.Load() && !x.soft {
			return false
		}
	}
	return true
}

// takeLocked takes n bytes if they fit now in a and every parent, with no
// earlier waiter blocked at any of them, and reports whether it did.
func (a *Account) takeLocked(n int64) bool {
	for x := a; x != nil; x = x.parent {
		if x.blockedBy > 0 {
			return false
		}
	}
	ok, _ := a.take(n, 0, inTurn)
	return ok
}

func (a *Account) addLocked(n int64) {
	for x := a; x != nil; x = x.parent {
		x.used.Add(n)
	}
}

// TryTake takes n bytes if they fit now and no earlier waiter is blocked
// at a or a parent; it never waits.
func (a *Account) TryTake(n int64) bool {
	b := a.budget
	if b.queued.Load() == 0 {
		ok, undone := a.take(n, 0, inTurn)
		b.gaveBack(undone)
		return ok
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return a.takeLocked(n)
}

// TryTakeAhead takes n bytes if they fit now, reserves included, even
// ahead of earlier waiters: for memory that cannot wait (a response,
// written or refused at once), which a waiter blocked on bytes that do
// not fit must not refuse while there is room. It never waits.
func (a *Account) TryTakeAhead(n int64) bool {
	ok, undone := a.take(n, 0, ahead)
	a.budget.gaveBack(undone)
	return ok
}

// Overdraw takes n bytes whether or not they fit: for memory that must not
// wait, and is bounded elsewhere. It is counted like any other, so others
// wait until it is given back.
func (a *Account) Overdraw(n int64) {
	b := a.budget
	b.mu.Lock()
	a.addLocked(n)
	b.mu.Unlock()
}

// TryOverdraw takes n bytes beyond the limits, as Overdraw does, if that
// leaves no account from a up holding more than its limit plus over; it
// never waits. For memory that must not wait but may be refused. An
// account whose limit was lowered below what it held, or that took one
// allocation above its limit by the soft rule (Child), counts over from
// what it held instead, shrinking as bytes are given back: otherwise,
// until they were, it would refuse every such allocation, however small.
func (a *Account) TryOverdraw(n, over int64) bool {
	ok, undone := a.take(n, over, overdrawn)
	a.budget.gaveBack(undone)
	return ok
}

// gaveBack grants the waiters that fit, if a take without the lock gave
// bytes back (undone) while one may wait: such bytes may be what a waiter
// queued meanwhile needs. It raised queued before it looked, so either it
// saw the bytes back or this sees it.
func (b *Budget) gaveBack(undone bool) {
	if !undone || b.queued.Load() == 0 {
		return
	}
	b.mu.Lock()
	ready := b.scanLocked()
	b.mu.Unlock()
	signal(ready)
}

// Release gives back n bytes taken from a, and grants the waiters that
// fit now, in order.
func (a *Account) Release(n int64) {
	if n == 0 {
		return
	}
	b := a.budget
	b.mu.Lock()
	for x := a; x != nil; x = x.parent {
		if x.used.Load() < n { // checked first: a refused release changes nothing
			b.mu.Unlock()
			panic("limit: released more than was taken")
		}
	}
	a.addLocked(-n)
	for x := a; x != nil; x = x.parent {
		if f := x.floor.Load(); f != 0 {
			if used := x.used.Load(); used <= x.limit.Load() {
				x.floor.Store(0)
			} else if used < f {
				x.floor.Store(used)
			}
		}
	}
	var ready []*Waiter
	if len(b.waiters) > 0 {
		ready = b.scanLocked()
	}
	b.mu.Unlock()
	signal(ready)
}

// Waiter is an allocation waiting for room.
type Waiter struct {
	account *Account
	n       int64
	// ready is closed once the waiter is settled: granted, or impossible
	// (it can never fit under the current limits).
	ready   chan struct{}
	onReady func(granted bool)
	granted bool
	settled bool
}

// Ready returns a channel closed once the waiter is settled; Granted then
// tells whether it got its bytes.
func (w *Waiter) Ready() <-chan struct{} { return w.ready }

// Granted reports whether the bytes were taken; valid once Ready is
// closed.
func (w *Waiter) Granted() bool {
	w.account.budget.mu.Lock()
	defer w.account.budget.mu.Unlock()
	return w.granted
}

// Cancel withdraws a waiter. It reports true when the waiter had not been
// settled (and now never will be); false when it was already granted, in
// which case the caller owns the bytes, or already failed.
func (w *Waiter) Cancel() bool {
	b := w.account.budget
	b.mu.Lock()
	if w.settled {
		b.mu.Unlock()
		return false
	}
	w.settled = true
	for i, x := range b.waiters {
		if x == w {
			// slices.Delete clears the slot left past the new end,
			// which would otherwise keep w, and what its onReady
			// reaches, until written over.
			b.waiters = slices.Delete(b.waiters, i, i+1)
			b.queued.Add(-1)
			break
		}
	}
	// Waiters behind it may fit now that it no longer blocks them.
	ready := b.scanLocked()
	b.mu.Unlock()
	signal(ready)
	return true
}

// Wait takes n bytes, waiting in turn for room; it gives up when done or
// stop is closed (either may be nil) and reports false, as it does at once
// when n can never fit under the current limits.
func (a *Account) Wait(n int64, done, stop <-chan struct{}) bool {
	w, ok := a.enqueue(n, nil)
	if w == nil {
		return ok
	}
	select {
	case <-w.ready:
	case <-done:
	case <-stop:
	}
	if w.Cancel() {
		return false
	}
	return w.Granted()
}

// WaitFunc takes n bytes now if it can and reports true; otherwise it
// queues the allocation and returns its Waiter, whose onReady is called
// (outside the budget's lock, on the goroutine that settled it) once it is
// granted or found impossible. It reports false and no waiter when n can
// never fit.
func (a *Account) WaitFunc(n int64, onReady func(granted bool)) (*Waiter, bool) {
	return a.enqueue(n, onReady)
}

// enqueue takes n bytes if they fit (nil, true), fails when they never
// can (nil, false), or queues a waiter.
func (a *Account) enqueue(n int64, onReady func(bool)) (*Waiter, bool) {
	b := a.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queued.Add(1) // before it looks: see TryTake
	if a.takeLocked(n) {
		b.queued.Add(-1)
		return nil, true
	}
	if !a.possible(n) {
		b.queued.Add(-1)
		return nil, false
	}
	w := &Waiter{account: a, n: n, ready: make(chan struct{}), onReady: onReady}
	b.waiters = append(b.waiters, w)
	b.markBlockedLocked(w)
	return w, false
}

// markBlockedLocked records the lowest account where w does not fit, so
// that later allocations through it queue behind w — unless an earlier
// waiter is blocked at an account on the way, behind which w waits
// already. The accounts above it are left alone: w can take nothing there
// before that account lets it through, and when it does, the scan that
// finds it so marks the next account up where w does not fit, if any.
func (b *Budget) markBlockedLocked(w *Waiter) {
	for x := w.account; x != nil; x = x.parent {
		if x.blockedBy > 0 {
			return
		}
		if !x.room(w.n) {
			if x.blockedBy == 0 {
				b.blocked = append(b.blocked, x)
			}
			x.blockedBy++
			return
		}
	}
}

// scanLocked grants, in order, the waiters that fit, fails those that can
// never fit, and recomputes where the rest are blocked. It returns the
// waiters it settled, for signal to tell outside the lock.
func (b *Budget) scanLocked() []*Waiter {
	for _, x := range b.blocked {
		x.blockedBy = 0
	}
	clear(b.blocked)
	b.blocked = b.blocked[:0]
	var settled []*Waiter
	kept := b.waiters[:0]
	for _, w := range b.waiters {
		switch {
		case w.account.takeLocked(w.n):
			w.granted, w.settled = true, true
			settled = append(settled, w)
		case !w.account.possible(w.n):
			w.settled = true
			settled = append(settled, w)
		default:
			b.markBlockedLocked(w)
			kept = append(kept, w)
		}
	}
	clear(b.waiters[len(kept):])
	b.waiters = kept
	b.queued.Add(-int64(len(settled)))
	return settled
}

// signal tells settled waiters, outside the budget's lock.
func signal(ws []*Waiter) {
	for _, w := range ws {
		close(w.ready)
		if w.onReady != nil {
			w.onReady(w.granted)
		}
	}
}
