package coalescing

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDisabledNeverWaits(t *testing.T) {
	d := NewDisabled()
	now := observeGaps(d, repeat(16, 0), 100) // as dense as traffic gets
	for pending := range 200 {
		assert.Zero(t, d.Wait(now, pending, pending*100))
	}
	d.Flushed(now, 17, 1700, 0, 0)
	s := d.Stats()
	assert.Equal(t, NameDisabled, s.Strategy)
	assert.Zero(t, s.Window)
	assert.Equal(t, us(0.001), s.AverageGap)
	assert.Equal(t, uint64(1), s.Writes)
	assert.Zero(t, s.Waited)
}

func TestStatsRecord(t *testing.T) {
	var d Disabled
	for _, messages := range []int{1, 2, 3, 4, 5, 8, 9, 1000, 1 << 20} {
		d.Flushed(t0, messages, 10*messages, us(2), us(3))
	}
	s := d.Stats()
	assert.Equal(t, NameDisabled, s.Strategy, "the zero value reports its name too")
	assert.Equal(t, uint64(9), s.Writes)
	assert.Equal(t, uint64(1+2+3+4+5+8+9+1000+1<<20), s.Messages)
	assert.Equal(t, 10*s.Messages, s.Bytes)
	assert.Equal(t, us(18), s.RequestedWait)
	assert.Equal(t, us(27), s.ObservedWait)
	assert.Equal(t, uint64(9), s.Waited)
	// Bucket i holds 2^(i-1)+1 .. 2^i messages; the last takes everything larger.
	want := [BatchBuckets]uint64{0: 1, 1: 1, 2: 2, 3: 2, 4: 1, 10: 1, 11: 1}
	assert.Equal(t, want, s.BatchHistogram)
}
