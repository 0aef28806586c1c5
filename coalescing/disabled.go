package coalescing

import "time"

// Disabled never waits: the writer writes whatever is queued at once. This is
// drain-only batching: messages that pile up while a write is in progress go
// out together in the next one. It is what Cassandra 4.0 ships, and the
// baseline every other strategy has to beat.
//
// A Disabled is not safe for concurrent use; use one per connection.
type Disabled struct {
	gaps  gapAverage
	stats Stats
}

var _ Strategy = (*Disabled)(nil)

// NewDisabled returns a strategy that never waits.
func NewDisabled() *Disabled { return &Disabled{} }

// Observe implements Strategy. Disabled tracks the gap between messages only
// to report it in Stats.
func (d *Disabled) Observe(enqueuedAt time.Time, _ int) { d.gaps.observe(enqueuedAt) }

// Wait implements Strategy; it always returns zero.
func (d *Disabled) Wait(time.Time, int, int) time.Duration { return 0 }

// Flushed implements Strategy.
func (d *Disabled) Flushed(_ time.Time, messages, bytes int, requested, observed time.Duration) {
	d.stats.record(messages, bytes, requested, observed)
}

// Stats implements Strategy. AverageGap is the mean of the last 16 gaps.
func (d *Disabled) Stats() Stats {
	s := d.stats
	s.Strategy = NameDisabled
	s.AverageGap = d.gaps.average()
	return s
}

func (s *Stats) record(messages, bytes int, requested, observed time.Duration) {
	s.Writes++
	s.Messages += uint64(messages)
	s.Bytes += uint64(bytes)
	s.RequestedWait += requested
	s.ObservedWait += observed
	s.BatchHistogram[batchBucket(messages)]++
	if requested > 0 {
		s.Waited++
	}
}

func batchBucket(messages int) int {
	b := 0
	for n := 1; n < messages && b < BatchBuckets-1; n <<= 1 {
		b++
	}
	return b
}
