package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestGapAverage(t *testing.T) {
	tests := []struct {
		name string
		gaps []time.Duration // between consecutive observations, the first at t0
		want time.Duration
	}{
		{"nothing seen counts as sparse", nil, maxTrackedGap},
		{"15 gaps: the 16th still counts as ~2.1 s", repeat(15, us(10)), (us(150) + maxTrackedGap) / 16},
		{"16 gaps of 10µs", repeat(16, us(10)), us(10)},
		{"only the last 16 count", concat(repeat(16, time.Millisecond), repeat(16, us(10))), us(10)},
		{"one lull among 15 short gaps", concat(repeat(15, us(1)), []time.Duration{time.Millisecond}), 63437},
		{"simultaneous messages count as 1 ns apart", repeat(16, 0), 1},
		{"out-of-order messages count as 1 ns apart", concat(repeat(8, -us(5)), repeat(8, 0)), 1},
		{"a gap is capped at ~2.1 s", concat(repeat(15, 0), []time.Duration{time.Hour}), (15 + maxTrackedGap) / 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g gapAverage
			now := t0
			g.observe(now)
			for _, gap := range tt.gaps {
				now = now.Add(gap)
				g.observe(now)
			}
			assert.Equal(t, tt.want, g.average())
		})
	}
}

func TestGapAverageOutOfOrderKeepsLatest(t *testing.T) {
	var g gapAverage
	g.observe(t0)
	g.observe(t0.Add(us(100)))
	g.observe(t0.Add(us(50))) // late: a 1 ns gap; the clock stays at +100µs
	g.observe(t0.Add(us(110)))
	assert.Equal(t, (us(100)+1+us(10)+13*maxTrackedGap)/16, g.average())
}
