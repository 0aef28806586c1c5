package coalescing

import "time"

// Disabled never waits: the writer writes whatever is queued at once. This is
// drain-only batching: messages that pile up while a write is in progress go
// out together in the next one.
type Disabled struct {
	stats Stats
}

var _ Strategy = (*Disabled)(nil)

// NewDisabled returns a strategy that never waits.
func NewDisabled() *Disabled { return &Disabled{stats: Stats{Strategy: "disabled"}} }

// Observe implements Strategy.
func (d *Disabled) Observe(time.Time, int) {}

// Wait implements Strategy; it always returns zero.
func (d *Disabled) Wait(time.Time, int, int) time.Duration { return 0 }

// Flushed implements Strategy.
func (d *Disabled) Flushed(_ time.Time, messages, bytes int, requested, observed time.Duration) {
	d.stats.record(messages, bytes, requested, observed)
}

// Stats implements Strategy.
func (d *Disabled) Stats() Stats { return d.stats }

func (s *Stats) record(messages, bytes int, requested, observed time.Duration) {
	s.Writes++
	s.Messages += uint64(messages)
	s.Bytes += uint64(bytes)
	s.RequestedWait += requested
	s.ObservedWait += observed
	s.BatchHistogram[batchBucket(messages)]++
}

func batchBucket(messages int) int {
	b := 0
	for n := 1; n < messages && b < BatchBuckets-1; n <<= 1 {
		b++
	}
	return b
}
