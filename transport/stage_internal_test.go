package transport

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// TestStageBoundsAndTurns: a stage wakes one worker at a time, a worker
// that takes work wakes the next while more waits and a slot is free,
// and handlers never exceed the stage's bound, node wide or per peer.
func TestStageBoundsAndTurns(t *testing.T) {
	s := newStage("read", 3, 2)
	a, b := &peer{id: "a"}, &peer{id: "b"}
	item := func(p *peer, id uint64) *work {
		return &work{ic: &inConn{peer: p}, h: wire.Header{ID: id}, queuedAt: monoNanos()}
	}
	assert.True(t, s.submit(item(a, 1)), "no worker: start one")
	assert.False(t, s.submit(item(a, 2)), "one is on its way")
	s.submit(item(a, 3))
	s.submit(item(b, 4))
	now := time.Now()
	w, start := s.take(true, nil, now) // the first worker
	assert.Equal(t, uint64(1), w.h.ID)
	assert.True(t, start, "more waits: a second worker")
	w, start = s.take(true, nil, now) // the second
	assert.Equal(t, uint64(4), w.h.ID, "b's turn")
	assert.True(t, start)
	w, start = s.take(true, nil, now) // the third
	assert.Equal(t, uint64(2), w.h.ID)
	assert.False(t, start, "the stage is full")
	assert.Equal(t, 3, s.stats(9).Active)
	assert.Equal(t, 1, s.stats(9).Queued)

	// b's handler returns: a is at its bound, so 3 waits; the worker idles.
	w, _ = s.take(false, b, now)
	assert.Nil(t, w, "a at its bound of 2")
	// a's returns: its worker takes 3.
	w, _ = s.take(false, a, now)
	assert.Equal(t, uint64(3), w.h.ID)
	assert.Zero(t, s.stats(9).Queued)
	assert.EqualValues(t, 4, s.stats(9).Started)

	// A new message wakes the idle worker rather than starting one.
	assert.False(t, s.submit(item(b, 5)))
	require.Len(t, s.wake, 1)
	<-s.wake
	w, _ = s.take(true, nil, now)
	assert.Equal(t, uint64(5), w.h.ID)
	for _, p := range []*peer{a, a, b} {
		w, _ = s.take(false, p, now)
		assert.Nil(t, w)
	}
	assert.Zero(t, s.stats(9).Active)
	assert.Empty(t, s.byPeer, "nothing kept for peers with no work")
	assert.Equal(t, 3, s.idle)
	assert.False(t, s.retire(), "an idle worker may go")
}

// TestStageServesPeersInTurn: waiting peers take turns rather than the
// first to queue taking all.
func TestStageServesPeersInTurn(t *testing.T) {
	s := newStage("read", 1, 0)
	a, b := &peer{id: "a"}, &peer{id: "b"}
	item := func(p *peer, id uint64) *work { return &work{ic: &inConn{peer: p}, h: wire.Header{ID: id}} }
	for i := uint64(1); i <= 3; i++ {
		s.submit(item(a, i))
	}
	for i := uint64(11); i <= 13; i++ {
		s.submit(item(b, i))
	}
	var order []uint64
	w, _ := s.take(true, nil, time.Now())
	for w != nil {
		order = append(order, w.h.ID)
		w, _ = s.take(false, w.ic.peer, time.Now())
	}
	assert.Equal(t, []uint64{1, 11, 2, 12, 3, 13}, order)
}

// TestStagePeerQueueDoesNotGrowWhileItNeverEmpties: a peer whose next
// message always waits in a stage (a steady backlog: a busy client, a
// slow disk) kept a slot for every message it ever ran until its queue
// emptied once — memory outside the inbound limits, growing with the
// messages handled rather than those waiting, copied under the stage's
// lock, which every reader and worker takes, each time the slice grew.
// The slots already run are dropped once they are half of it, as an
// ordered queue's are.
func TestStagePeerQueueDoesNotGrowWhileItNeverEmpties(t *testing.T) {
	s := newStage("read", 1, 0)
	a := &peer{id: "a"}
	item := func(id uint64) *work { return &work{ic: &inConn{peer: a}, h: wire.Header{ID: id}} }
	s.submit(item(1))
	s.submit(item(2))
	w, _ := s.take(true, nil, time.Now())
	require.Equal(t, uint64(1), w.h.ID)
	const n = 5000
	for i := uint64(3); i <= n; i++ {
		s.submit(item(i)) // behind i-1, which waits
		w, _ = s.take(false, a, time.Now())
		require.Equal(t, i-1, w.h.ID)
	}
	pw := s.byPeer[a]
	assert.Equal(t, 1, pw.waiting(), "one message waits")
	assert.LessOrEqual(t, cap(pw.queue.items), 4*keptStageSlots,
		"queue slots kept for %d messages run (len %d) while at most two waited", n, len(pw.queue.items))
}

// TestCancelsBeforeDuringAndAfter: a cancel that comes before its request
// stops it at arrival; one that comes while it waits stops it from
// starting; one that comes while it runs cancels its context; the
// tombstones of cancels whose requests never come are bounded.
func TestCancelsBeforeDuringAndAfter(t *testing.T) {
	var c cancels
	ic := &inConn{done: make(chan struct{})} // the requests' connection, open
	c.cancel(1)
	assert.False(t, c.add(&work{h: wire.Header{ID: 1}}), "cancelled before it came")
	assert.Empty(t, c.tombs)

	waiting := &work{ic: ic, h: wire.Header{ID: 2}}
	require.True(t, c.add(waiting))
	c.cancel(2)
	reason, ok := c.start(waiting, func() {})
	assert.False(t, ok, "cancelled while it waited")
	assert.Equal(t, ReasonCanceled, reason)
	c.forget(waiting)

	running := &work{ic: ic, h: wire.Header{ID: 3}}
	require.True(t, c.add(running))
	ctx, cancel := context.WithCancel(context.Background())
	_, ok = c.start(running, cancel)
	require.True(t, ok)
	c.cancel(3)
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.True(t, c.finish(running), "its answer is not sent")
	c.forget(running)
	assert.Empty(t, c.live)

	for id := uint64(100); id < 100+3*maxTombstones; id++ {
		c.cancel(id)
	}
	assert.Len(t, c.tombs, maxTombstones)
	assert.True(t, c.add(&work{h: wire.Header{ID: 100}}), "the oldest forgotten")
	assert.False(t, c.add(&work{h: wire.Header{ID: 100 + 3*maxTombstones - 1}}), "the newest kept")
}

// TestCancelTombstonesAreForgottenInTurn: a tombstone is forgotten
// maxTombstones cancels after its own, whatever its ID: one for request 0
// (a peer may number from 0) was kept for ever, and refused that ID's
// next request, and one that came again after its request had taken the
// first was forgotten with the first's slot, early.
func TestCancelTombstonesAreForgottenInTurn(t *testing.T) {
	var c cancels
	c.cancel(0)
	for id := uint64(1); id <= maxTombstones; id++ {
		c.cancel(id)
	}
	assert.True(t, c.add(&work{h: wire.Header{ID: 0}}), "request 0's tombstone forgotten in turn")

	var d cancels
	d.cancel(7)
	assert.False(t, d.add(&work{h: wire.Header{ID: 7}}), "the first tombstone taken")
	d.cancel(7) // a second one, for a second request 7
	for id := uint64(100); id < 100+maxTombstones-1; id++ {
		d.cancel(id) // the first one's slot is reused
	}
	assert.Equal(t, maxTombstones, len(d.tombs), "the second 7 and the rest")
	assert.False(t, d.add(&work{h: wire.Header{ID: 7}}), "the second tombstone is not forgotten with the first's slot")
}

// TestARequestStartedAsItsConnectionEndsIsNotRun: handle looks at a
// request's connection before it starts the handler, and registers the
// handler's cancel (start) a moment later. A connection that ended in
// between (end: kill, then ended) had ended come and go before that
// cancel was there to call: the handler ran with a context nothing
// cancelled, until its deadline — or for ever without one — holding its
// worker and its frame's room for an answer with nowhere to go. Then it
// ran with its context cancelled; its caller had failed it already, so it
// does not run at all: it is dropped, its connection reset.
func TestARequestStartedAsItsConnectionEndsIsNotRun(t *testing.T) {
	var c cancels
	ic := &inConn{done: make(chan struct{})}
	w := &work{ic: ic, h: wire.Header{ID: 1}}
	require.True(t, c.add(w))
	// handle has seen ic.done open; now the connection ends.
	close(ic.done)
	c.ended(ic)
	reason, ok := c.start(w, func() {})
	assert.False(t, ok, "a request whose connection ended does not start")
	assert.Equal(t, ReasonConnectionReset, reason)
}

// TestStageWithdrawLeavesTheRestInTurn: a request withdrawn from a
// stage (its caller cancelled it) leaves its peer's queue and the stage's
// count at once, wherever it waits, and the rest start in order and in
// turn; one taken for its turn already, or withdrawn once, is not there.
func TestStageWithdrawLeavesTheRestInTurn(t *testing.T) {
	s := newStage("read", 1, 0)
	a, b := &peer{id: "a"}, &peer{id: "b"}
	item := func(p *peer, id uint64) *work { return &work{ic: &inConn{peer: p}, h: wire.Header{ID: id}} }
	a1, a2, a3, b1 := item(a, 1), item(a, 2), item(a, 3), item(b, 4)
	for _, w := range []*work{a1, a2, a3, b1} {
		s.submit(w)
	}
	w, _ := s.take(true, nil, time.Now())
	require.Same(t, a1, w)
	assert.False(t, s.withdraw(a1), "running, not waiting")
	assert.True(t, s.withdraw(a3), "the last of a's")
	assert.True(t, s.withdraw(a2), "the first of a's")
	assert.False(t, s.withdraw(a2), "withdrawn once")
	st := s.stats(1)
	assert.Equal(t, 1, st.Queued, "b's alone waits")
	assert.Equal(t, []*peer{b}, s.turn, "a has nothing waiting: out of turn")
	w, _ = s.take(false, a, time.Now())
	require.Same(t, b1, w, "b's, next")
	assert.Nil(t, s.byPeer[a], "a's share let go of: nothing of a's runs or waits")
	assert.Nil(t, s.next(), "nothing else waits")
	assert.False(t, s.withdraw(b1), "running")
}

// TestWorkQueuePassesOverWithdrawnSlots: work withdrawn from anywhere in
// a queue is passed over, the rest taken in order, through the queue's
// trimming of the slots already passed.
func TestWorkQueuePassesOverWithdrawnSlots(t *testing.T) {
	var q workQueue
	const n = 1000
	items := make([]*work, n)
	for i := range items {
		items[i] = &work{h: wire.Header{ID: uint64(i)}}
		q.push(items[i])
	}
	var got []uint64
	base := q.base
	for i := range items {
		if i%3 == 1 {
			require.True(t, q.withdraw(items[i], 64), "item %d", i)
		}
		if i%2 == 0 { // behind the withdrawals: the queue trims its passed slots meanwhile
			w := q.pop(64)
			require.NotNil(t, w)
			got = append(got, w.h.ID)
		}
	}
	assert.Greater(t, q.base, base, "trimmed while withdrawals went on")
	for w := q.pop(64); w != nil; w = q.pop(64) {
		got = append(got, w.h.ID)
	}
	var want []uint64
	for i := range uint64(n) {
		if i%3 != 1 {
			want = append(want, i)
		}
	}
	assert.Equal(t, want, got)
	assert.Zero(t, q.waiting)
	assert.Empty(t, q.items, "emptied")
}

// TestExpiriesTakeWhatIsDue: work added to and removed from an expiries
// at random, as queues take and withdraw it, with deadlines in any order:
// due takes exactly the work whose deadline has passed, each once, and
// reports the soonest deadline left for the timer; the heap's order and
// each work's index in it hold throughout; work without a deadline is
// not kept, and the timer is set again only for a deadline sooner than
// the one it is set for.
func TestExpiriesTakeWhatIsDue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var e expiries
	waiting := map[*work]bool{}
	check := func() {
		t.Helper()
		require.Len(t, e.heap, len(waiting))
		for i, w := range e.heap {
			require.Equal(t, i+1, w.expiry, "its index")
			require.True(t, waiting[w])
			if i > 0 {
				require.LessOrEqual(t, e.heap[(i-1)/2].deadline, w.deadline, "heap order")
			}
		}
	}
	now := int64(1000)
	for range 5000 {
		switch r := rng.IntN(10); {
		case r < 5:
			w := &work{deadline: now + rng.Int64N(500) - 50, queuedAt: now}
			if rng.IntN(8) == 0 {
				w.deadline = 0
			}
			armedBefore := e.armed
			d, arm := e.add(w, now)
			switch {
			case w.deadline == 0:
				assert.False(t, arm, "no deadline")
				assert.Zero(t, w.expiry, "not kept")
				continue
			case armedBefore == 0 || w.deadline < armedBefore:
				assert.True(t, arm, "sooner than the timer")
				assert.Equal(t, time.Duration(w.deadline-now), d)
				assert.Equal(t, w.deadline, e.armed)
			default:
				assert.False(t, arm, "the timer rings sooner")
			}
			waiting[w] = true
		case r < 8 && len(waiting) > 0:
			w := e.heap[rng.IntN(len(e.heap))]
			e.remove(w)
			e.remove(w) // taken once
			assert.Zero(t, w.expiry)
			delete(waiting, w)
		default:
			now += rng.Int64N(100)
			expired, d, rearm := e.due(now)
			for _, w := range expired {
				assert.LessOrEqual(t, w.deadline, now, "due")
				assert.True(t, waiting[w], "taken once")
				delete(waiting, w)
			}
			soonest := int64(0)
			for w := range waiting {
				assert.Greater(t, w.deadline, now, "left: not due")
				if soonest == 0 || w.deadline < soonest {
					soonest = w.deadline
				}
			}
			assert.Equal(t, soonest != 0, rearm)
			assert.Equal(t, soonest, e.armed)
			if rearm {
				assert.Equal(t, time.Duration(soonest-now), d)
			}
		}
		check()
	}
}
