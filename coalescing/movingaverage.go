package coalescing

import "time"

// MovingAverage is the article's "relatively simple coalescing strategy that
// maintains a moving average of the last 16 gaps between messages" and then
// waits by the doubling rule (see doublingWait): only when waiting would
// roughly double the batch, for up to the window.
//
// A connection counts as sparse until it has seen 16 gaps, and one long gap
// (a lull) keeps the average high for the next 16 messages.
//
// A MovingAverage is not safe for concurrent use; use one per connection.
type MovingAverage struct {
	window time.Duration
	gaps   gapAverage
	round  waitRound
	stats  Stats
}

var _ Strategy = (*MovingAverage)(nil)

// NewMovingAverage returns Cassandra's MOVINGAVERAGE strategy with the given
// window, clamped to [0, WindowLimit]; zero never waits.
func NewMovingAverage(window time.Duration) *MovingAverage {
	return &MovingAverage{window: clampWindow(window)}
}

// Observe implements Strategy.
func (m *MovingAverage) Observe(enqueuedAt time.Time, _ int) { m.gaps.observe(enqueuedAt) }

// Wait implements Strategy. With EnoughMessages or more pending it returns
// zero; otherwise the doubling rule on the average of the last 16 gaps.
// Calls before the next Flushed share the first positive answer's deadline.
func (m *MovingAverage) Wait(now time.Time, pendingMessages, _ int) time.Duration {
	if pendingMessages >= EnoughMessages {
		m.stats.EarlyFlushes++
		return 0
	}
	return m.round.bound(now, doublingWait(pendingMessages, m.gaps.average(), m.window))
}

// Flushed implements Strategy.
func (m *MovingAverage) Flushed(_ time.Time, messages, bytes int, requested, observed time.Duration) {
	m.round.end()
	m.stats.record(messages, bytes, requested, observed)
}

// Stats implements Strategy. AverageGap is the mean of the last 16 gaps.
func (m *MovingAverage) Stats() Stats {
	s := m.stats
	s.Strategy = NameMovingAverage
	s.Window = m.window
	s.AverageGap = m.gaps.average()
	return s
}
