package limit

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBudgetNestedLimits(t *testing.T) {
	b := NewBudget(100)
	peer := b.Root().Child(60, false)
	c1, c2 := peer.Child(40, false), peer.Child(40, false)
	other := b.Root().Child(60, false).Child(40, false)

	require.True(t, c1.TryTake(40))
	assert.False(t, c1.TryTake(1), "the connection is full")
	require.True(t, c2.TryTake(20))
	assert.False(t, c2.TryTake(1), "the peer is full: its connections share its 60 bytes")
	require.True(t, other.TryTake(40))
	assert.False(t, other.TryTake(1), "the connection is full")
	assert.Equal(t, int64(100), b.Root().Used(), "the node holds its limit and no more")
	assert.Equal(t, int64(60), peer.Used())

	c1.Release(40)
	assert.True(t, c2.TryTake(20), "freed by a sibling connection")
	assert.Panics(t, func() { c1.Release(1) }, "a double release is caught")
}

func TestBudgetSoftAccountTakesOneOversizeWhenEmpty(t *testing.T) {
	b := NewBudget(1000)
	conn := b.Root().Child(100, true).Child(10, true)
	require.True(t, conn.TryTake(80), "an empty connection takes one message above its limit")
	assert.False(t, conn.TryTake(1), "but nothing beside it")
	conn.Release(80)
	require.True(t, conn.TryTake(5))
	assert.False(t, conn.TryTake(80), "not empty any more: the limit holds")
	assert.False(t, b.Root().Child(100, false).TryTake(101), "a hard account never exceeds its limit")
	ok := b.Root().Child(10, false).Wait(11, nil, nil)
	assert.False(t, ok, "waiting for what can never fit fails at once")
}

// TestBudgetWaitersAreServedInOrder: a large waiter is not starved by a
// stream of small allocations: once it waits, they queue behind it.
func TestBudgetWaitersAreServedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(100)
		held := b.Root().Child(100, false)
		require.True(t, held.TryTake(90))

		big := b.Root().Child(100, false)
		bigDone := make(chan bool)
		go func() { bigDone <- big.Wait(50, nil, nil) }()
		synctest.Wait()
		assert.Equal(t, 1, b.Waiting())

		small := b.Root().Child(100, false)
		assert.False(t, small.TryTake(5), "5 bytes fit, but the large waiter came first")
		smallDone := make(chan bool)
		go func() { smallDone <- small.Wait(5, nil, nil) }()
		synctest.Wait()

		held.Release(40) // 50 free: exactly the large waiter's
		require.True(t, <-bigDone)
		synctest.Wait()
		select {
		case <-smallDone:
			t.Fatal("the small waiter got room that was not there")
		default:
		}
		held.Release(50)
		require.True(t, <-smallDone)
		assert.Equal(t, int64(55), b.Root().Used())
	})
}

// TestBudgetTryTakeAhead: a take that cannot wait gets room that fits
// ahead of an earlier waiter, which TryTake leaves it, and nothing beyond
// the limits.
func TestBudgetTryTakeAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(100)
		held := b.Root().Child(100, false)
		require.True(t, held.TryTake(90))
		big := b.Root().Child(100, false)
		bigDone := make(chan bool)
		go func() { bigDone <- big.Wait(50, nil, nil) }()
		synctest.Wait()

		now := b.Root().Child(100, false)
		assert.False(t, now.TryTake(5), "in order behind the waiter")
		assert.True(t, now.TryTakeAhead(5), "5 bytes fit")
		assert.False(t, now.TryTakeAhead(6), "6 more do not")
		assert.Equal(t, int64(95), b.Root().Used())

		now.Release(5)
		held.Release(40)
		require.True(t, <-bigDone, "the waiter is served once its bytes are back")
		assert.Equal(t, int64(100), b.Root().Used())
	})
}

// TestBudgetWaiterBlockedOnItsConnectionDoesNotBlockOthers: waiting is in
// order only at the account where a waiter is blocked.
func TestBudgetWaiterBlockedOnItsConnectionDoesNotBlockOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(1000)
		peer := b.Root().Child(500, false)
		full := peer.Child(10, false)
		require.True(t, full.TryTake(10))
		go full.Wait(5, nil, nil) // blocked at its own connection
		synctest.Wait()
		assert.True(t, peer.Child(100, false).TryTake(100), "a sibling connection is not held up")
		assert.True(t, b.Root().Child(100, false).TryTake(100), "nor another peer")
		full.Release(10)
		synctest.Wait()
		assert.Zero(t, b.Waiting())
		assert.Equal(t, int64(205), b.Root().Used())
	})
}

// TestBudgetWaiterBlockedOnItsConnectionLeavesItsPeerToOthers: a waiter
// that does not fit at its own connection cannot use its peer's room
// before its connection has some, so it does not hold that room back from
// its sibling connections either — even when the peer too is full for
// it. (A large lane waiting for its own room left its peer's small lanes
// waiting behind it, though their room is set apart from its own.)
func TestBudgetWaiterBlockedOnItsConnectionLeavesItsPeerToOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(1000)
		peer := b.Root().Child(64, false)
		large, small := peer.Child(56, true), peer.Child(4, true)
		require.True(t, large.TryTake(48))
		require.True(t, small.TryTake(1))
		granted := make(chan bool)
		go func() { granted <- large.Wait(16, nil, nil) }() // fits neither its connection nor its peer
		synctest.Wait()
		require.Equal(t, 1, b.Waiting())

		assert.True(t, small.TryTake(2), "the small connection's room is its own")
		done := make(chan bool)
		go func() { done <- small.Wait(1, nil, nil) }()
		synctest.Wait()
		select {
		case ok := <-done:
			assert.True(t, ok)
		default:
			t.Fatal("a small allocation that fits waits behind the large one")
		}

		large.Release(16) // room at its connection; the peer holds 36 of 64
		require.True(t, <-granted)
		assert.Equal(t, int64(52), peer.Used())
	})
}

// TestBudgetSecondWaiterBehindItsConnectionLeavesItsPeerToOthers: a
// waiter queued behind another at its own connection cannot take anything
// before that one does, so it does not hold back its peer's room either,
// though its bytes alone would fit its connection.
func TestBudgetSecondWaiterBehindItsConnectionLeavesItsPeerToOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(1000)
		peer := b.Root().Child(64, false)
		large, small := peer.Child(56, true), peer.Child(16, true)
		require.True(t, large.TryTake(48))
		require.True(t, small.TryTake(10)) // the peer holds 58 of 64
		go large.Wait(16, nil, nil)        // does not fit its connection (48+16 > 56)
		synctest.Wait()
		go large.Wait(8, nil, nil) // fits its connection (56), not the peer (66)
		synctest.Wait()
		require.Equal(t, 2, b.Waiting())
		// The second waiter fits the large connection but is behind the
		// first there; it can use no peer room before the first does.
		assert.True(t, small.TryTake(4), "the small connection's room at the peer is held back by a waiter that cannot use it")
		large.Release(48)
		synctest.Wait()
	})
}

// TestBudgetWaitCostsNothing: a hundred waiters stay parked while other
// goroutines take and give back room that does not fit them — the pattern
// that made the old tiered limit spin. Each waiter is woken once, when it
// is granted.
func TestBudgetWaitCostsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(1000)
		peer := b.Root().Child(100, false)
		conn := peer.Child(100, false)
		require.True(t, conn.TryTake(95))
		const waiters = 100
		var wg sync.WaitGroup
		for range waiters {
			wg.Go(func() { assert.True(t, conn.Wait(10, nil, nil)) })
		}
		synctest.Wait()
		require.Equal(t, waiters, b.Waiting())
		// Churn elsewhere: allocations that fit and are given back, and
		// attempts on the blocked connection that fail.
		other := b.Root().Child(1000, false)
		for range 1000 {
			require.True(t, other.TryTake(50))
			other.Release(50)
			assert.False(t, conn.TryTake(1))
		}
		synctest.Wait() // every waiter is durably blocked: none was woken to retry
		assert.Equal(t, waiters, b.Waiting())
		for range waiters {
			conn.Release(10)
			synctest.Wait()
		}
		conn.Release(95)
		wg.Wait()
		assert.Zero(t, b.Waiting())
		assert.Zero(t, conn.Used())
	})
}

func TestBudgetWaitGivesUp(t *testing.T) {
	b := NewBudget(10)
	a := b.Root().Child(10, false)
	require.True(t, a.TryTake(10))
	done := make(chan struct{})
	close(done)
	assert.False(t, a.Wait(5, done, nil))
	assert.Zero(t, b.Waiting(), "a waiter that gave up is gone")
	a.Release(10)
	assert.Zero(t, b.Root().Used(), "and took nothing")
}

func TestBudgetSetLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(20)
		a := b.Root().Child(100, false)
		require.True(t, a.TryTake(10))
		got := make(chan bool)
		go func() { got <- a.Wait(15, nil, nil) }()
		synctest.Wait()
		b.Root().SetLimit(30)
		assert.True(t, <-got, "raising the limit grants the waiter")

		go func() { got <- a.Wait(50, nil, nil) }()
		synctest.Wait()
		b.Root().SetLimit(40)
		assert.False(t, <-got, "a waiter that can no longer ever fit fails")
	})
}

func TestBudgetWaitFunc(t *testing.T) {
	b := NewBudget(10)
	a := b.Root().Child(10, false)
	w, ok := a.WaitFunc(6, nil)
	require.True(t, ok)
	require.Nil(t, w)
	var granted []bool
	w, ok = a.WaitFunc(6, func(g bool) { granted = append(granted, g) })
	require.False(t, ok)
	require.NotNil(t, w)
	a.Release(6)
	assert.Equal(t, []bool{true}, granted, "called by the release that made room")
	assert.False(t, w.Cancel(), "already granted")
	a.Release(6)

	w, ok = a.WaitFunc(11, nil)
	assert.Nil(t, w)
	assert.False(t, ok, "never fits")
}

// TestBudgetLetsGoOfACancelledWaiter: a waiter cancelled while others
// wait is not kept by the budget. Taken out of the queue by shifting the
// ones behind it down, it stayed in the slot past the queue's new end,
// and with it its onReady and all that reaches (the transport's: a large
// message waiting for room, its connection, its peer's entry), until a
// longer queue wrote over that slot.
func TestBudgetLetsGoOfACancelledWaiter(t *testing.T) {
	b := NewBudget(10)
	a := b.Root().Child(10, false)
	require.True(t, a.TryTake(10))
	first, ok := a.WaitFunc(5, nil)
	require.False(t, ok)
	kept := func() weak.Pointer[byte] {
		held := make([]byte, 1<<20) // what the waiter's onReady reaches
		last, ok := a.WaitFunc(5, func(bool) { _ = held })
		require.False(t, ok)
		require.True(t, last.Cancel())
		return weak.Make(&held[0])
	}()
	for range 10 {
		runtime.GC()
	}
	assert.Nil(t, kept.Value(), "the cancelled waiter's onReady is still reachable")
	assert.Equal(t, 1, b.Waiting())
	require.True(t, first.Cancel())
}

// TestBudgetProperty runs random allocations, waits, cancellations,
// releases and raised limits from several goroutines and checks after
// each step that no account holds more than its limit (soft ones aside,
// which may hold one oversize allocation) and that everything given back
// returns the budget to zero.
func TestBudgetProperty(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		nodeLimit := int64(200 + r.IntN(300))
		b := NewBudget(nodeLimit)
		var accounts []*Account
		var peers []*Account
		for range 3 {
			p := b.Root().Child(int64(100+r.IntN(200)), false)
			peers = append(peers, p)
			for range 3 {
				accounts = append(accounts, p.Child(int64(20+r.IntN(100)), r.IntN(2) == 0))
			}
		}
		check := func() {
			for _, p := range peers {
				assert.LessOrEqual(t, p.Used(), p.Limit(), "seed %d: peer over its limit", seed)
			}
			assert.LessOrEqual(t, b.Root().Used(), b.Root().Limit(), "seed %d: node over its limit", seed)
		}
		// The node holds what its peers hold once no take is half done
		// (a take without the lock goes account by account).
		checkSums := func() {
			var sum int64
			for _, p := range peers {
				sum += p.Used()
			}
			assert.Equal(t, sum, b.Root().Used(), "seed %d: the node holds what its peers hold", seed)
		}
		var wg, ran sync.WaitGroup
		ran.Add(4)
		checked := make(chan struct{})
		for g := range 4 {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			wg.Go(func() {
				var held []struct {
					a *Account
					n int64
				}
				for range 300 {
					a := accounts[r.IntN(len(accounts))]
					n := int64(1 + r.IntN(60))
					switch op := r.IntN(10); {
					case op < 4:
						if a.TryTake(n) {
							held = append(held, struct {
								a *Account
								n int64
							}{a, n})
						}
					case op < 6:
						done := make(chan struct{})
						timer := time.AfterFunc(time.Duration(r.IntN(200))*time.Microsecond, func() { close(done) })
						if a.Wait(n, done, nil) {
							held = append(held, struct {
								a *Account
								n int64
							}{a, n})
						}
						timer.Stop()
					case op < 9 && len(held) > 0:
						i := r.IntN(len(held))
						held[i].a.Release(held[i].n)
						held = append(held[:i], held[i+1:]...)
					default:
						if r.IntN(20) == 0 { // raised only: lowering frees nothing (TestBudgetSetLimit)
							p := peers[r.IntN(len(peers))]
							p.SetLimit(p.Limit() + int64(r.IntN(20)))
						}
					}
					check()
				}
				ran.Done()
				<-checked
				for _, h := range held {
					h.a.Release(h.n)
				}
			})
		}
		ran.Wait()
		checkSums()
		close(checked)
		wg.Wait()
		for _, a := range append(accounts, peers...) {
			assert.Zero(t, a.Used(), "seed %d: everything came back", seed)
		}
		assert.Zero(t, b.Root().Used(), "seed %d: everything came back", seed)
		assert.Zero(t, b.Waiting(), "seed %d", seed)
	}
}

// TestBudgetOverdraw: an overdraft is taken whatever the limits, counted
// at every level, and holds back others until it is given back.
func TestBudgetOverdraw(t *testing.T) {
	b := NewBudget(100)
	peer := b.Root().Child(50, false)
	conn := peer.Child(10, false)
	conn.Overdraw(80)
	assert.Equal(t, int64(80), conn.Used())
	assert.Equal(t, int64(80), peer.Used())
	assert.Equal(t, int64(80), b.Root().Used())
	other := b.Root().Child(100, false)
	assert.False(t, other.TryTake(30), "the node has 20 left")
	assert.True(t, other.TryTake(20))
	conn.Release(80)
	assert.True(t, other.TryTake(30))
	assert.Zero(t, peer.Used())
}

// TestBudgetTryOverdraw: an overdraft within a margin is taken beyond the
// limits, up to limit plus margin at every level, and refused past it.
func TestBudgetTryOverdraw(t *testing.T) {
	b := NewBudget(100)
	peer := b.Root().Child(50, false)
	conn := peer.Child(10, false)
	assert.True(t, conn.TryOverdraw(15, 5), "conn at 15 of 10+5")
	assert.False(t, conn.TryOverdraw(1, 5), "conn past its limit plus margin")
	other := peer.Child(100, false)
	assert.True(t, other.TryOverdraw(40, 5), "peer at 55 of 50+5")
	assert.False(t, other.TryOverdraw(1, 5), "peer past its limit plus margin")
	node := b.Root().Child(200, false)
	assert.True(t, node.TryOverdraw(50, 5), "node at 105 of 100+5")
	assert.False(t, node.TryOverdraw(1, 5), "node past its limit plus margin")
	assert.Equal(t, int64(105), b.Root().Used())
	conn.Release(15)
	other.Release(40)
	node.Release(50)
	assert.Zero(t, b.Root().Used())
}

// TestBudgetTryOverdrawAfterALoweredLimit: once a limit is lowered below
// what its account holds, the overdraft margin counts from what it held,
// not from the new limit, which every overdraft was then past: the
// transport's failures standing in for responses were all refused until
// the bytes came back. The margin shrinks as bytes are given back, and a
// second lowering does not raise it.
func TestBudgetTryOverdrawAfterALoweredLimit(t *testing.T) {
	b := NewBudget(1000)
	sends, replies := b.Root().Child(1000, false), b.Root().Child(1000, false)
	require.True(t, sends.TryTake(800))
	b.Root().SetLimit(500)
	assert.True(t, replies.TryOverdraw(5, 10), "node at 805 of 800+10")
	assert.False(t, replies.TryOverdraw(6, 10), "node past what it held plus margin")
	sends.Release(300)
	assert.False(t, replies.TryOverdraw(11, 10), "node at 516 of 505+10: the margin shrank with what came back")
	assert.True(t, replies.TryOverdraw(10, 10), "node at 515 of 505+10")
	b.Root().SetLimit(400)
	assert.False(t, replies.TryOverdraw(1, 10), "lowered again: the margin counts from no more than before")
	sends.Release(100)
	assert.True(t, replies.TryOverdraw(10, 10), "node at 425 of 415+10")
	sends.Release(400)
	replies.Release(25)
	assert.Zero(t, b.Root().Used())
	assert.True(t, replies.TryOverdraw(410, 10), "back under its limit: the margin counts from the limit")
	assert.False(t, replies.TryOverdraw(1, 10))
	replies.Release(410)
}

// TestBudgetTryOverdrawBesideASoftTake: an empty soft account takes one
// allocation above its limit; TryOverdraw's margin then counted from the
// limit, so while that allocation was held every overdraw was refused,
// however small: a connection carrying one response above its limit
// dropped every other response, and the failures meant to stand in for
// them. The margin counts from what the soft take left held, shrinking as
// it is given back.
func TestBudgetTryOverdrawBesideASoftTake(t *testing.T) {
	b := NewBudget(1000)
	conn := b.Root().Child(100, true)
	require.True(t, conn.TryTakeAhead(300), "empty and soft: one allocation above its limit")
	require.True(t, conn.TryOverdraw(10, 10), "conn at 310 of 300+10")
	assert.False(t, conn.TryOverdraw(1, 10), "conn past what it held plus margin")
	conn.Release(300)
	assert.False(t, conn.TryOverdraw(101, 10), "the soft take given back: the margin counts from the limit")
	assert.True(t, conn.TryOverdraw(100, 10), "conn at 110 of 100+10")
	conn.Release(110)
	assert.Zero(t, b.Root().Used())
	require.True(t, conn.TryTake(300), "empty and soft again")
	require.True(t, conn.TryOverdraw(10, 10), "conn at 310 of 300+10")
	conn.Release(310)
}

// TestBudgetRefusedReleaseChangesNothing: a release of more than was taken
// panicked only after it had subtracted, leaving the account negative
// and its parents no longer holding the sum of their children.
func TestBudgetRefusedReleaseChangesNothing(t *testing.T) {
	b := NewBudget(100)
	peer := b.Root().Child(100, false)
	conn := peer.Child(100, false)
	require.True(t, conn.TryTake(10))
	require.Panics(t, func() { conn.Release(11) })
	assert.Equal(t, int64(10), conn.Used(), "the refused release changed the account")
	assert.Equal(t, conn.Used(), peer.Used(), "the peer holds what its connection holds")
	assert.Equal(t, conn.Used(), b.Root().Used())
}

// TestBudgetTryOverdrawWithAnUnboundedLimit: with a limit near
// math.MaxInt64 (a node limit meant as "none"), limit+over overflowed and
// TryOverdraw refused everything, though every account was far below its
// limit plus the margin.
func TestBudgetTryOverdrawWithAnUnboundedLimit(t *testing.T) {
	b := NewBudget(math.MaxInt64)
	peer := b.Root().Child(math.MaxInt64, false)
	conn := peer.Child(10, true)
	require.True(t, conn.TryTake(10))
	assert.True(t, conn.TryOverdraw(5, 64<<10), "conn at 15 of 10+64Ki; peer and node nearly empty")
	assert.False(t, conn.TryOverdraw(64<<10, 64<<10), "conn beyond 10+64Ki")
}

// TestBudgetTakeGivenBackLetsAWaiterIn: a take without the lock that fits
// its account but not the parent holds the account's bytes for a moment
// before giving them back. A waiter that found the account full in that
// moment must be granted once they are back; nothing else would wake it,
// as no bytes are released while the peer holds the parent full.
func TestBudgetTakeGivenBackLetsAWaiterIn(t *testing.T) {
	b := NewBudget(1000)
	peer := b.Root().Child(100, false)
	lane, other := peer.Child(50, false), peer.Child(100, false)
	require.True(t, other.TryTake(70)) // the peer has 30 left
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// 45 fits the lane, never the peer: taken and given back.
				if !assert.False(t, lane.TryTake(45)) {
					lane.Release(45)
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for i := range 2000 {
		w, ok := lane.WaitFunc(30, nil) // fits the lane and the peer
		if w != nil {
			select {
			case <-w.Ready():
				ok = w.Granted()
			case <-time.After(5 * time.Second):
				t.Fatalf("wait %d: the waiter was never let in", i)
			}
		}
		require.True(t, ok)
		lane.Release(30)
	}
}

// hammer runs fn in n goroutines until the returned stop is called.
func hammer(n int, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				fn()
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// TestBudgetTakeThatFitsIsNeverRefused: a take that fits every account
// — and whose concurrent takes all fail, so they change nothing — must
// succeed, as under a lock. A take of another allocation that fits the
// lane but not the peer must not hold the lane's bytes even for a moment,
// or a TryTake that looks then is refused bytes that were never held (the
// transport's reply writer would send ErrOverloaded in place of an answer
// that had room; a stream session would be refused).
func TestBudgetTakeThatFitsIsNeverRefused(t *testing.T) {
	b := NewBudget(1000)
	peer := b.Root().Child(100, false)
	lane, other := peer.Child(50, false), peer.Child(100, false)
	require.True(t, other.TryTake(70)) // the peer has 30 left
	stop := hammer(1, func() {
		if lane.TryTake(45) { // fits the lane, never the peer
			panic("took 45 with 30 left")
		}
	})
	const n = 200000
	refused := refusals(lane, 30, n) // fits the lane (50) and the peer (30 left)
	stop()
	assert.Zero(t, refused, "of %d takes that fit, %d were refused", n, refused)
}

// refusals takes and gives back size from a, n times, and counts the
// takes refused.
func refusals(a *Account, size int64, n int) int {
	refused := 0
	for range n {
		if a.TryTake(size) {
			a.Release(size)
		} else {
			refused++
		}
	}
	return refused
}

// TestBudgetEmptySoftAccountTakesItsOversizeBesideARefusedTake: an empty
// soft account takes one allocation above its limit. A concurrent
// oversize take that the parent refuses must not leave the account
// looking non-empty for a moment, or the allocation that fits is refused.
func TestBudgetEmptySoftAccountTakesItsOversizeBesideARefusedTake(t *testing.T) {
	b := NewBudget(1000)
	peer := b.Root().Child(100, false)
	require.True(t, peer.Child(100, false).TryTake(75)) // the peer has 25 left
	conn := peer.Child(10, true)
	stop := hammer(1, func() {
		if conn.TryTake(30) { // the soft rule lets it into conn; the peer refuses it
			panic("took 30 with 25 left")
		}
	})
	const n = 200000
	refused := refusals(conn, 20, n) // conn is empty: its one oversize; the peer has room
	stop()
	assert.Zero(t, refused, "of %d oversize takes by an empty soft account, %d were refused", n, refused)
}

// TestBudgetTryOverdrawStaysWithinItsMarginBesideTakes: a take without the
// lock between TryOverdraw's look and its add would leave the node beyond
// its limit plus the overdraft's margin.
func TestBudgetTryOverdrawStaysWithinItsMarginBesideTakes(t *testing.T) {
	b := NewBudget(100)
	require.True(t, b.Root().Child(100, false).TryTake(90))
	taker, drawer := b.Root().Child(100, false), b.Root().Child(100, false)
	stop := hammer(1, func() {
		if taker.TryTake(10) {
			taker.Release(10)
		}
	})
	var worst atomic.Int64
	const n = 200000
	for range n {
		if drawer.TryOverdraw(20, 10) { // only with the node at 90: 110 = 100+10
			worst.Store(max(worst.Load(), b.Root().Used()))
			drawer.Release(20)
		}
	}
	stop()
	assert.LessOrEqual(t, worst.Load(), int64(110), "the node beyond its limit plus the overdraft's margin")
}

// TestBudgetReserve: an account's reserve is left to allocations that
// cannot wait. Others fit in the limit less the reserve, wait for room
// there, and fail when they could only ever fit in the reserve.
func TestBudgetReserve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(100)
		b.Root().SetReserve(20)
		sends, replies := b.Root().Child(100, false), b.Root().Child(100, false)

		require.True(t, sends.TryTake(80))
		assert.False(t, sends.TryTake(1), "the sends leave the reserve")
		require.True(t, replies.TryTakeAhead(15), "taken ahead, it may use the reserve")
		require.True(t, replies.TryOverdraw(5, 0), "as may an overdraw within the limit")
		assert.False(t, replies.TryTakeAhead(1), "but not beyond the limit")
		assert.Equal(t, int64(100), b.Root().Used())

		got := make(chan bool)
		go func() { got <- sends.Wait(10, nil, nil) }()
		synctest.Wait()
		replies.Release(20)
		select {
		case <-got:
			t.Fatal("a waiter was granted the reserve given back")
		default:
		}
		sends.Release(10)
		assert.True(t, <-got, "granted by room outside the reserve")

		go func() { got <- sends.Wait(5, nil, nil) }()
		synctest.Wait()
		b.Root().SetReserve(10)
		assert.True(t, <-got, "lowering the reserve grants the waiter")

		assert.False(t, sends.Wait(95, nil, nil), "what fits only with the reserve never fits: it fails at once")
		sends.Release(85)
		assert.Zero(t, b.Root().Used())
	})
}

// TestBudgetLimitAndReserveChangeTogether: a waiter that fits under the new
// limit less the new reserve keeps waiting when both change at once; it is
// never judged against the new limit with the old reserve, under which it
// could never fit.
func TestBudgetLimitAndReserveChangeTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(1000)
		b.Root().SetReserve(100)
		held, waiting := b.Root().Child(1000, false), b.Root().Child(1000, false)
		require.True(t, held.TryTake(900))

		got := make(chan bool, 1)
		go func() { got <- waiting.Wait(450, nil, nil) }()
		synctest.Wait()
		b.Root().SetLimitAndReserve(500, 10) // 450 fits in 500-10, never in 500-100
		synctest.Wait()
		select {
		case ok := <-got:
			t.Fatalf("the waiter was settled (granted %v) before any room came back", ok)
		default:
		}
		held.Release(900)
		assert.True(t, <-got, "granted once the room comes back")
		assert.False(t, waiting.TryTake(41), "the new reserve holds: 491 is past 500-10")
		require.True(t, waiting.TryTake(40), "and no more than it: 490 fits")
		waiting.Release(490)

		b.Root().SetLimit(200)
		assert.False(t, waiting.Wait(191, nil, nil), "SetLimit keeps the reserve: 191 never fits in 200-10")
	})
}
