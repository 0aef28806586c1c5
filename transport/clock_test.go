package transport

import (
	"context"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

func TestClockFollowsTimeNow(t *testing.T) {
	var c clock
	for range 1000 {
		before := time.Now().UnixNano()
		got, _ := c.now()
		after := time.Now().UnixNano()
		// Readings may differ from time.Now's by the clock's adjustment
		// within a second, far less than a millisecond.
		if slack := int64(time.Millisecond); got < before-slack || got > after+slack {
			t.Fatalf("clock %d outside [%d, %d]", got, before, after)
		}
	}
}

func BenchmarkClock(b *testing.B) {
	var c clock
	for b.Loop() {
		_, _ = c.now()
	}
}

// observedTimes is a coalescing strategy that records the enqueue times
// the writer shows it, and never waits.
type observedTimes struct {
	mu    sync.Mutex
	times []time.Time
}

func (o *observedTimes) Observe(at time.Time, _ int) {
	o.mu.Lock()
	o.times = append(o.times, at)
	o.mu.Unlock()
}
func (o *observedTimes) Wait(time.Time, int, int) time.Duration                    { return 0 }
func (o *observedTimes) Flushed(time.Time, int, int, time.Duration, time.Duration) {}
func (o *observedTimes) Stats() coalescing.Stats                                   { return coalescing.Stats{} }

// TestCoalescingSeesNoWallClockStep: the coalescing strategies were shown
// wall-clock enqueue times, and the transport's clock follows a step of
// the wall clock within a second: after a step back of an hour (an NTP
// step, a VM resumed) every gap between messages read as negative, and
// the strategies coalesced wrongly for that hour. They are shown
// monotonic times now.
func TestCoalescingSeesNoWallClockStep(t *testing.T) {
	tr := coreTransport(t, nil)
	p, err := tr.peerFor("n2", true)
	require.NoError(t, err)
	c := p.lane(routing.Small)
	rec := &observedTimes{}
	c.setStrategy(rec)
	send := func() {
		require.NoError(t, tr.sendOn(context.Background(), c, &wire.Header{Verb: 1}, 0, []byte("x"), false))
	}
	send()
	a := tr.clock.anchor.Load()
	require.NotNil(t, a)
	// The clock renews its anchor from a wall clock that stepped back.
	tr.clock.anchor.Store(&clockAnchor{wall: a.wall - int64(time.Hour), mono: a.mono})
	send()
	c.askWait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.times, 2)
	gap := rec.times[1].Sub(rec.times[0])
	assert.True(t, gap >= 0 && gap < time.Second, "the gap between two messages sent a moment apart reads %v", gap)
}

// TestMonoDeadline: a deadline becomes a monotonic time that keeps what is
// left of it; one long past is still a deadline (not 0, "none"), and one
// beyond the monotonic clock's range saturates instead of wrapping.
func TestMonoDeadline(t *testing.T) {
	before := monoNanos()
	d := monoDeadline(time.Now().Add(time.Minute))
	after := monoNanos()
	assert.GreaterOrEqual(t, d, before+int64(time.Minute))
	assert.LessOrEqual(t, d, after+int64(time.Minute))
	assert.Equal(t, int64(1), monoDeadline(time.Unix(0, 0)), "long past")
	assert.Equal(t, int64(math.MaxInt64), monoDeadline(time.Now().AddDate(1000, 0, 0)), "beyond range")
	now := time.Now()
	assert.WithinDuration(t, now.Add(time.Minute), wallDeadline(monoDeadline(now.Add(time.Minute)), now), time.Millisecond)
}

// TestMonoDeadlineInBubble: in a synctest bubble time.Now reads the fake
// clock (2000-01-01) with no monotonic reading, so its Sub with
// processStart is measured on the wall clock. The monotonic time read
// negative there; monoDeadline's overflow check (left > MaxInt64-now)
// overflowed for a negative now and made every deadline "none"
// (MaxInt64), and the clamps to 1 (monoDeadline, a lane's quietSince)
// put a real time 26 years after the bubble's now. Any bubbled test of a
// message's deadline tested nothing.
func TestMonoDeadlineInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := monoNanos()
		assert.Positive(t, now, "the monotonic time, 0 meaning none to deadlines and quiet lanes")
		d := monoDeadline(time.Now().Add(time.Second))
		require.Equal(t, now+int64(time.Second), d, "a deadline a second away (the bubble's clock stands still)")
		at := time.Now()
		require.Equal(t, at.Add(time.Second), wallDeadline(d, at))
		require.Equal(t, int64(1), monoDeadline(time.Unix(0, 0)), "long past")
		require.Equal(t, int64(math.MaxInt64), monoDeadline(time.Now().AddDate(1000, 0, 0)), "beyond range")
		time.Sleep(time.Second) // the bubble's clock: the deadline is reached
		require.GreaterOrEqual(t, monoNanos(), d)
	})
	// Outside the bubble the origin keeps its monotonic reading: a step of
	// the wall clock moves no monotonic time.
	require.Contains(t, processStart.String(), "m=", "processStart carries a monotonic reading")
}
