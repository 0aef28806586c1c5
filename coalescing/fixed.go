package coalescing

import "time"

// Fixed waits its whole window before every write that is not already full.
// The article calls it "mostly useful for testing and experimentation": it does
// not adapt to load, so on a quiet connection every message pays the full
// window in latency.
//
// A Fixed is not safe for concurrent use; use one per connection.
type Fixed struct {
	window time.Duration
	gaps   gapAverage
	round  waitRound
	stats  Stats
}

var _ Strategy = (*Fixed)(nil)

// NewFixed returns a strategy that always waits window (Cassandra's FIXED).
// The window is clamped to [0, WindowLimit]; zero never waits.
func NewFixed(window time.Duration) *Fixed {
	return &Fixed{window: clampWindow(window)}
}

// Observe implements Strategy. Fixed tracks the gap between messages only to
// report it in Stats.
func (f *Fixed) Observe(enqueuedAt time.Time, _ int) { f.gaps.observe(enqueuedAt) }

// Wait implements Strategy. It returns the window when something is pending
// and fewer than EnoughMessages are; zero otherwise. Calls before the next
// Flushed share the first positive answer's deadline.
func (f *Fixed) Wait(now time.Time, pendingMessages, _ int) time.Duration {
	if pendingMessages <= 0 {
		return 0
	}
	if pendingMessages >= EnoughMessages {
		f.stats.EarlyFlushes++
		return 0
	}
	return f.round.bound(now, f.window)
}

// Flushed implements Strategy.
func (f *Fixed) Flushed(_ time.Time, messages, bytes int, requested, observed time.Duration) {
	f.round.end()
	f.stats.record(messages, bytes, requested, observed)
}

// Stats implements Strategy. AverageGap is the mean of the last 16 gaps.
func (f *Fixed) Stats() Stats {
	s := f.stats
	s.Strategy = NameFixed
	s.Window = f.window
	s.AverageGap = f.gaps.average()
	return s
}
