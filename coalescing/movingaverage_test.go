package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestMovingAverageWait(t *testing.T) {
	lull := concat(repeat(15, us(1)), []time.Duration{time.Millisecond}) // mean 63.437µs
	tests := []struct {
		name    string
		gaps    []time.Duration
		pending int
		wantGap time.Duration
		want    time.Duration
	}{
		{"nothing pending", repeat(16, us(10)), 0, us(10), 0},
		{"fewer than 16 gaps: sparse", repeat(15, us(10)), 1, 134227102, 0},
		{"10µs gap, one pending: 10→20→40→80→160", repeat(16, us(10)), 1, us(10), us(160)},
		{"10µs gap, three pending: 30→60→120", repeat(16, us(10)), 3, us(10), us(120)},
		{"10µs gap, seven pending: 70→140", repeat(16, us(10)), 7, us(10), us(140)},
		{"EnoughMessages pending: write now", repeat(16, us(10)), EnoughMessages, us(10), 0},
		{"100µs gap, two pending: exactly the window", repeat(16, us(100)), 2, us(100), us(200)},
		{"101µs gap, two pending: cannot double, no wait", repeat(16, us(101)), 2, us(101), 0},
		{"gap beyond the window", repeat(16, us(250)), 1, us(250), 0},
		{"one lull, one pending: 63437→126874", lull, 1, 63437, 126874},
		{"one lull, three pending: 190311", lull, 3, 63437, 190311},
		{"one lull, four pending: 253748 > window", lull, 4, 63437, 0},
		{"simultaneous messages: 1 ns doubled to 131072", repeat(16, 0), 1, 1, 131072},
		{"the average slides: sparse then dense", concat(repeat(16, time.Millisecond), repeat(16, us(10))), 1, us(10), us(160)},
		{"the average slides: dense then one lull", concat(repeat(16, us(10)), []time.Duration{us(3050)}), 1, us(200), us(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMovingAverage(us(200))
			now := observeGaps(m, tt.gaps, 100)
			assert.Equal(t, tt.wantGap, m.Stats().AverageGap)
			assert.Equal(t, tt.want, m.Wait(now, tt.pending, 100*tt.pending))
		})
	}
}

func TestMovingAverageStats(t *testing.T) {
	m := NewMovingAverage(us(200))
	now := observeGaps(m, repeat(16, us(10)), 100)
	w := m.Wait(now, 1, 100)
	m.Flushed(now.Add(w), 1, 100, w, us(190))
	assert.Zero(t, m.Wait(now, EnoughMessages, 800))

	s := m.Stats()
	assert.Equal(t, NameMovingAverage, s.Strategy)
	assert.Equal(t, us(200), s.Window)
	assert.Equal(t, us(10), s.AverageGap)
	assert.Equal(t, us(160), s.RequestedWait)
	assert.Equal(t, us(190), s.ObservedWait)
	assert.Equal(t, uint64(1), s.EarlyFlushes)
}

// TestMovingAverageAfterTheClockSteppedBack: times that step back, as a
// wall clock does when it is set back (times without Go's monotonic
// reading), leave the average as it was, and once 16 gaps of the traffic
// after the step have been seen it is theirs. Every message before the
// clock caught up with the last one before the step counted as 1 ns after
// it, so a sparse connection counted as dense for as long as the step, an
// hour here, and waited half its window or more at every write.
func TestMovingAverageAfterTheClockSteppedBack(t *testing.T) {
	m := NewMovingAverage(us(200))
	now := observeGaps(m, repeat(16, 10*time.Millisecond), 100)
	now = now.Add(-time.Hour) // the clock is set back
	for range 16 {
		now = now.Add(10 * time.Millisecond)
		m.Observe(now, 100)
	}
	assert.Equal(t, 10*time.Millisecond, m.Stats().AverageGap)
	assert.Zero(t, m.Wait(now, 1, 100), "sparse: no wait")
}
