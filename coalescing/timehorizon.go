package coalescing

import "time"

// Time horizon geometry, from the article: "Time horizon tracks the number of
// messages sent in the last sixteen 64 millisecond periods." Like Cassandra,
// a period is 2^26 ns (about 67.1 ms) so that a bucket is a shift away.
const (
	horizonBuckets     = 16
	horizonBucketShift = 26
	horizonBucketWidth = time.Duration(1) << horizonBucketShift
	// horizonMeasured is the span the average is taken over: the 15 complete
	// periods. The period being filled is left out.
	horizonMeasured = (horizonBuckets - 1) * horizonBucketWidth
)

// TimeHorizon is the article's TIMEHORIZON strategy, Cassandra 2.2's default
// (later reverted as a regression, CASSANDRA-12676). It counts messages in 16
// periods of about 64 ms; "the moving average is calculated by dividing the
// length of 15 periods divided by the count of messages sent in the last 15
// periods", and then it waits by the doubling rule (see doublingWait).
//
// Because the average spans about a second, it reacts slowly: the period
// being filled never counts, and for the first second of a burst the average
// still divides by the quiet periods before it (at a steady 16 µs gap it
// first waits once two periods, about 134 ms, are complete).
//
// A TimeHorizon is not safe for concurrent use; use one per connection.
type TimeHorizon struct {
	window   time.Duration
	origin   time.Time // enqueue time of the first message; buckets count from it
	started  bool
	newest   int64 // number of the period being filled, counted from origin
	counts   [horizonBuckets]uint32
	complete uint64 // messages in the 15 periods before newest
	round    waitRound
	stats    Stats
}

var _ Strategy = (*TimeHorizon)(nil)

// NewTimeHorizon returns Cassandra's TIMEHORIZON strategy with the given
// window, clamped to [0, WindowLimit]; zero never waits.
func NewTimeHorizon(window time.Duration) *TimeHorizon {
	return &TimeHorizon{window: clampWindow(window)}
}

// Observe implements Strategy. A message older than the 16 periods held is
// ignored, as Cassandra ignores samples from before its epoch; one more
// than about 2.1 s (maxTrackedGap) before the period being filled began
// is a clock set back, and the horizon starts again from it.
func (h *TimeHorizon) Observe(enqueuedAt time.Time, _ int) {
	newestStart := h.origin.Add(time.Duration(h.newest) << horizonBucketShift)
	if !h.started || newestStart.Sub(enqueuedAt) > maxTrackedGap {
		// Ignored, every message until the clock came back to the
		// period being filled left the average where the step found it.
		h.origin, h.started, h.newest = enqueuedAt, true, 0
		h.counts, h.complete = [horizonBuckets]uint32{}, 0
	}
	offset := enqueuedAt.Sub(h.origin)
	if offset < 0 {
		return
	}
	period := int64(offset >> horizonBucketShift)
	switch {
	case period > h.newest:
		h.advance(period)
	case period < h.newest-(horizonBuckets-1):
		return
	}
	h.counts[period%horizonBuckets]++
	if period != h.newest {
		h.complete++
	}
}

// advance makes period the one being filled: the old partial period becomes
// complete, and periods that fall out of the horizon are cleared.
func (h *TimeHorizon) advance(period int64) {
	if period-h.newest >= horizonBuckets {
		h.counts = [horizonBuckets]uint32{}
		h.complete = 0
	} else {
		h.complete += uint64(h.counts[h.newest%horizonBuckets])
		for p := h.newest + 1; p <= period; p++ {
			slot := p % horizonBuckets // holds period p-16, now out of the horizon
			h.complete -= uint64(h.counts[slot])
			h.counts[slot] = 0
		}
	}
	h.newest = period
}

// averageGap is the length of 15 periods divided by the messages in them;
// with none, the connection is sparse.
func (h *TimeHorizon) averageGap() time.Duration {
	if h.complete == 0 {
		return maxTrackedGap
	}
	return max(horizonMeasured/time.Duration(h.complete), time.Nanosecond)
}

// Wait implements Strategy. With EnoughMessages or more pending it returns
// zero; otherwise the doubling rule on the time-horizon average gap. Calls
// before the next Flushed share the first positive answer's deadline.
func (h *TimeHorizon) Wait(now time.Time, pendingMessages, _ int) time.Duration {
	if pendingMessages >= EnoughMessages {
		h.stats.EarlyFlushes++
		return 0
	}
	return h.round.bound(now, doublingWait(pendingMessages, h.averageGap(), h.window))
}

// Flushed implements Strategy.
func (h *TimeHorizon) Flushed(_ time.Time, messages, bytes int, requested, observed time.Duration) {
	h.round.end()
	h.stats.record(messages, bytes, requested, observed)
}

// Stats implements Strategy. AverageGap is the time-horizon average: 15
// periods divided by the messages in them.
func (h *TimeHorizon) Stats() Stats {
	s := h.stats
	s.Strategy = NameTimeHorizon
	s.Window = h.window
	s.AverageGap = h.averageGap()
	return s
}
