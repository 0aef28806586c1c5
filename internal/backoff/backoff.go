// Package backoff computes reconnection delays: capped exponential growth
// with jitter, so that many nodes that lost the same peer do not redial it
// in lockstep. It is pure: the random source is passed in.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff yields successive delays between Min and Max. The zero value is
// not usable; set Min and Max. Not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	ceiling  time.Duration // the current upper bound, doubling from Min to Max
}

// Next returns the next delay: uniformly random in [ceiling/2, ceiling],
// where ceiling starts at Min and doubles per call up to Max.
func (b *Backoff) Next(r *rand.Rand) time.Duration {
	if b.ceiling > b.Max/2 {
		b.ceiling = b.Max // doubled, it would be past Max, or overflow
	} else {
		b.ceiling = min(max(2*b.ceiling, b.Min), b.Max)
	}
	half := b.ceiling / 2
	if half <= 0 {
		return b.ceiling
	}
	return half + time.Duration(r.Int64N(int64(b.ceiling-half)+1))
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.ceiling = 0 }
