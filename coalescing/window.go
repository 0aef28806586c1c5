package coalescing

import "time"

// DefaultWindow is the default coalescing window: the longest a strategy waits
// for more messages before a write. 200 µs is the default of Cassandra's
// otc_coalescing_window_us (CASSANDRA-8692).
const DefaultWindow = 200 * time.Microsecond

// WindowLimit is the largest window a strategy accepts. Constructors clamp
// larger windows to it and ByName rejects them: a wait this long is a stall,
// not coalescing.
const WindowLimit = time.Second

// clampWindow keeps a window within [0, WindowLimit].
func clampWindow(window time.Duration) time.Duration {
	return min(max(window, 0), WindowLimit)
}

// waitRound is the wait for one write. A writer may ask Wait again as
// messages arrive; every answer until the next Flushed is capped by the
// deadline of the first positive answer, so the total wait for one write
// never exceeds what the strategy first asked for, and so never exceeds its
// window. The article warns that Cassandra's waits overshot the window; this is
// the part of that overshoot a strategy can prevent.
type waitRound struct {
	deadline time.Time
	open     bool
}

// bound caps wait by the round's deadline, opening the round on the first
// positive wait. A call after the deadline answers zero and closes the round,
// so a writer that never reports its write cannot wedge the strategy.
func (r *waitRound) bound(now time.Time, wait time.Duration) time.Duration {
	if wait <= 0 {
		return 0
	}
	if !r.open {
		r.open = true
		r.deadline = now.Add(wait)
		return wait
	}
	left := r.deadline.Sub(now)
	if left <= 0 {
		r.open = false
		return 0
	}
	return min(wait, left)
}

// end closes the round; Flushed calls it after every write.
func (r *waitRound) end() { r.open = false }
