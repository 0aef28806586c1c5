package coalescing

import "time"

// t0 is the start of every hand-written trace.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// us is a number of microseconds, for traces that read like the article (see doc.go).
func us(n float64) time.Duration { return time.Duration(n * float64(time.Microsecond)) }

// repeat returns n copies of gap.
func repeat(n int, gap time.Duration) []time.Duration {
	gaps := make([]time.Duration, n)
	for i := range gaps {
		gaps[i] = gap
	}
	return gaps
}

// concat joins gap lists.
func concat(parts ...[]time.Duration) []time.Duration {
	var all []time.Duration
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

// observeGaps observes one message at t0 and one after each gap, all of the
// given size, and returns the time of the last.
func observeGaps(s Strategy, gaps []time.Duration, size int) time.Time {
	now := t0
	s.Observe(now, size)
	for _, g := range gaps {
		now = now.Add(g)
		s.Observe(now, size)
	}
	return now
}
