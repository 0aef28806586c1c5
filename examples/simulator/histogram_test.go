package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	for _, d := range []time.Duration{1, 7, 8, 9, 100, time.Microsecond, 1234567, time.Second, time.Minute} {
		mid := bucketMid(bucketOf(d))
		require.InEpsilon(t, float64(d), float64(mid), 0.07, "%v lands in a bucket centred on %v", d, mid)
	}
	for i := 1; i < numBuckets; i++ {
		require.Greater(t, bucketMid(i), bucketMid(i-1), "bucket %d", i)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	s := h.snapshot()
	require.Equal(t, uint64(1000), s.count())
	require.InEpsilon(t, 500, ms(s.quantile(0.5)), 0.07)
	require.InEpsilon(t, 990, ms(s.quantile(0.99)), 0.07)
	require.InEpsilon(t, 1000, ms(s.quantile(1)), 0.07)

	before := s
	h.record(5 * time.Second)
	after := h.snapshot()
	interval := after.minus(&before)
	require.Equal(t, uint64(1), interval.count())
	require.InEpsilon(t, 5000, ms(interval.quantile(0.99)), 0.07)

	var empty histSnapshot
	require.Zero(t, empty.quantile(0.99))
}
