package transport

import (
	"math"
	"sync/atomic"
	"time"
)

// clock reads the time for the send path with one monotonic clock read
// instead of time.Now's two (wall and monotonic): it adds the monotonic
// time elapsed to a wall-clock anchor that it renews every second, so the
// wall time it reports never strays from time.Now by more than the
// clock's adjustment in that second. Safe for concurrent use.
type clock struct {
	anchor atomic.Pointer[clockAnchor]
	// skew is added to the wall time this node tells its peers (a
	// message's CreatedAt): tests set it to play a node whose clock is
	// wrong. Deadlines travel as durations, so it must not move them.
	skew time.Duration
}

type clockAnchor struct {
	wall int64         // a time.Now reading's wall time, Unix nanoseconds
	mono time.Duration // the same instant as processStart-relative monotonic time
}

// processStart is the monotonic origin of every clock: the process's
// start, with its wall reading moved back to monoEpoch (no later than the
// start) and its monotonic reading by as much, so that a monotonic time is
// positive — 0 means none to a deadline or a quiet lane, and times are
// clamped to 1 — in a testing/synctest bubble too. There time.Now reads
// the fake clock, from 2000-01-01, with no monotonic reading, and its Sub
// with processStart is measured on the wall clock: from the start itself
// it read 26 years negative, and every deadline made in a bubble was
// none. Outside a bubble the monotonic readings count from the start as
// before, offset by a constant. (A Time keeps its monotonic reading while
// its wall reading stays after 1885.)
var processStart = func() time.Time {
	start := time.Now()
	return start.Add(-max(start.Sub(monoEpoch), 0))
}()

// monoEpoch is the wall reading of processStart: before synctest's fake
// clock starts.
var monoEpoch = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)

const clockRenewal = time.Second

// now returns the current wall time in Unix nanoseconds and the
// monotonic time (monoNanos) of the same reading. The wall time is plain
// integer arithmetic on the monotonic reading: the send path reads it for
// every message, and a time.Time's Add and UnixNano cost as much again as
// the clock read itself. Durations between events on this node are
// measured on the monotonic one, which a step of the wall clock (an NTP
// step, a VM resumed) does not move.
func (c *clock) now() (wall, mono int64) {
	m := time.Since(processStart)
	if a := c.anchor.Load(); a != nil {
		if d := m - a.mono; d >= 0 && d < clockRenewal {
			return a.wall + int64(d), int64(m)
		}
	}
	at := time.Now()
	m = at.Sub(processStart)
	c.anchor.Store(&clockAnchor{wall: at.UnixNano(), mono: m})
	return at.UnixNano(), int64(m)
}

// monoNanos is the monotonic time: nanoseconds since processStart.
func monoNanos() int64 { return int64(time.Since(processStart)) }

// monoTime is a monotonic reading as a time.Time that carries it, so that
// its Sub with time.Now() is measured on the monotonic clock.
func monoTime(mono int64) time.Time { return processStart.Add(time.Duration(mono)) }

// The deadlines a node keeps — a queued message's expiry, a received
// message's deadline — are monotonic times (monoNanos), so that a step of
// the wall clock (an NTP step, a VM resumed) moves none of them: a
// message's TTL is what is left of one, and a received one starts on
// arrival. Time values are made from them only to hand to a context or a
// handler (wallDeadline).

// monoDeadline is d as a monotonic time: the time left until d, measured
// on the monotonic clock when d carries a reading of it (a context's
// deadline made from time.Now does), from now. It is at least 1 (0 means
// no deadline) and saturates far in the future.
func monoDeadline(d time.Time) int64 {
	at := time.Now()
	now, left := int64(at.Sub(processStart)), d.Sub(at)
	// Compared so that it cannot overflow for any now: MaxInt64-now did
	// for a negative one.
	if left > 0 && now > math.MaxInt64-int64(left) {
		return math.MaxInt64
	}
	return max(now+int64(left), 1)
}

// wallDeadline is the monotonic time mono as a time.Time read against
// now, a time.Now reading: the wall clock's reading then plus what is
// left, and a monotonic reading that a context's timer and Sub use.
func wallDeadline(mono int64, now time.Time) time.Time {
	return now.Add(time.Duration(mono - int64(now.Sub(processStart))))
}
