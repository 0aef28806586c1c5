package coalescing

import (
	"math"
	"time"
)

// gapSamples is how many gaps gapAverage keeps: the article's MovingAverage
// "maintains a moving average of the last 16 gaps between messages".
const gapSamples = 16

// maxTrackedGap caps one gap, and stands in for gaps not yet seen, so that a
// new connection counts as sparse until 16 real gaps say otherwise. Cassandra
// caps a gap at Integer.MAX_VALUE nanoseconds (about 2.1 s) and starts every
// sample there; we do the same.
const maxTrackedGap = time.Duration(math.MaxInt32)

// gapAverage is the arithmetic mean of the last 16 gaps between observed
// messages. The mean of gaps is the span of the last 17 messages divided by
// 16, i.e. the inverse of the recent arrival rate. Its zero value is ready to
// use.
type gapAverage struct {
	last   time.Time
	seen   bool
	gaps   [gapSamples]time.Duration
	next   int           // slot the next gap goes into
	filled int           // slots holding a real gap
	sum    time.Duration // sum of the real gaps
}

// observe records a message enqueued at t.
func (g *gapAverage) observe(t time.Time) {
	if !g.seen {
		g.last, g.seen = t, true
		return
	}
	gap := t.Sub(g.last)
	switch {
	case gap > 0:
		g.last = t
	case gap < -maxTrackedGap:
		// Not a race but a clock set back (times without a monotonic
		// reading): no gap is known, and the clock goes on from here.
		// Counted as 1 ns gaps, every message until the clock came back
		// to the last one made a sparse connection dense.
		g.last = t
		return
	default:
		// Producers race to enqueue, so a message may carry a time no later
		// than its predecessor's. Like Cassandra, count it as a 1 ns gap: it
		// arrived together with the previous one.
		gap = time.Nanosecond
	}
	gap = min(gap, maxTrackedGap)
	if g.filled < gapSamples {
		g.filled++
	} else {
		g.sum -= g.gaps[g.next]
	}
	g.gaps[g.next] = gap
	g.sum += gap
	g.next = (g.next + 1) % gapSamples
}

// average returns the mean of the last 16 gaps, counting gaps not yet seen
// as maxTrackedGap. It is never below 1 ns.
func (g *gapAverage) average() time.Duration {
	unseen := time.Duration(gapSamples - g.filled)
	return (g.sum + unseen*maxTrackedGap) / gapSamples
}
