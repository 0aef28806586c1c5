package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// TestStageBoundsAndTurns: a stage starts work while it has slots, node
// wide and per peer, queues the rest, and as slots free serves the peers
// with waiting work in turn, each peer's in arrival order.
func TestStageBoundsAndTurns(t *testing.T) {
	s := &stage{limit: 3, perPeer: 2}
	a, b := &peer{id: "a"}, &peer{id: "b"}
	item := func(p *peer, id uint64) *work {
		return &work{ic: &inConn{peer: p}, h: wire.Header{ID: id}, queuedAt: time.Now().UnixNano()}
	}
	assert.True(t, s.submit(item(a, 1)))
	assert.True(t, s.submit(item(a, 2)))
	assert.False(t, s.submit(item(a, 3)), "a is at its bound")
	assert.False(t, s.submit(item(a, 4)))
	assert.True(t, s.submit(item(b, 5)), "the stage has a slot for b")
	assert.False(t, s.submit(item(b, 6)), "the stage is full")
	st := s.stats(9)
	assert.Equal(t, 3, st.Active)
	assert.Equal(t, 3, st.Queued)

	// b's handler returns: b's next may start (a is at its bound).
	assert.Equal(t, uint64(6), s.done(b, time.Now()).h.ID)
	// a's returns: a's next, in order.
	assert.Equal(t, uint64(3), s.done(a, time.Now()).h.ID)
	assert.Equal(t, uint64(4), s.done(a, time.Now()).h.ID)
	assert.Nil(t, s.done(b, time.Now()), "nothing left")
	st = s.stats(9)
	assert.Equal(t, 2, st.Active)
	assert.Zero(t, st.Queued)
	assert.EqualValues(t, 3, st.Waited)
	assert.Nil(t, s.done(a, time.Now()))
	assert.Nil(t, s.done(a, time.Now()))
	assert.Empty(t, s.byPeer, "nothing kept for peers with no work")
}

// TestStageServesPeersInTurn: with one slot, waiting peers take turns
// rather than the first to queue taking all.
func TestStageServesPeersInTurn(t *testing.T) {
	s := &stage{limit: 1}
	a, b := &peer{id: "a"}, &peer{id: "b"}
	item := func(p *peer, id uint64) *work { return &work{ic: &inConn{peer: p}, h: wire.Header{ID: id}} }
	require.True(t, s.submit(item(a, 0)))
	for i := uint64(1); i <= 3; i++ {
		s.submit(item(a, i))
	}
	for i := uint64(11); i <= 13; i++ {
		s.submit(item(b, i))
	}
	var order []uint64
	from := a
	for w := s.done(from, time.Now()); w != nil; w = s.done(from, time.Now()) {
		order = append(order, w.h.ID)
		from = w.ic.peer
	}
	assert.Equal(t, []uint64{1, 11, 2, 12, 3, 13}, order)
}

// TestCancelsBeforeDuringAndAfter: a cancel that comes before its request
// stops it at arrival; one that comes while it waits stops it from
// starting; one that comes while it runs cancels its context; the
// tombstones of cancels whose requests never come are bounded.
func TestCancelsBeforeDuringAndAfter(t *testing.T) {
	var c cancels
	c.cancel(1)
	assert.False(t, c.add(&work{h: wire.Header{ID: 1}}), "cancelled before it came")
	assert.Empty(t, c.tombs)

	waiting := &work{h: wire.Header{ID: 2}}
	require.True(t, c.add(waiting))
	c.cancel(2)
	assert.False(t, c.start(waiting, func() {}), "cancelled while it waited")
	c.forget(waiting)

	running := &work{h: wire.Header{ID: 3}}
	require.True(t, c.add(running))
	ctx, cancel := context.WithCancel(context.Background())
	require.True(t, c.start(running, cancel))
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
