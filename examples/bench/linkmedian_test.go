package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLinkMedianOfAnEvenCount: the link command's table shows medians of
// -repeat runs; of an even count that is the mean of the middle two, as
// for the scenarios (medianOf), not the higher of them: with -repeat 2 the
// table would show each cell's best msgs/s and worst p99.
func TestLinkMedianOfAnEvenCount(t *testing.T) {
	rate := func(r linkResult) float64 { return float64(r.Msgs) / r.Seconds }
	two := []linkResult{{Msgs: 3000, Seconds: 1}, {Msgs: 1000, Seconds: 1}}
	assert.Equal(t, 2000.0, linkMedian(two, rate))
	four := []linkResult{{Msgs: 4, Seconds: 1}, {Msgs: 1, Seconds: 1}, {Msgs: 3, Seconds: 1}, {Msgs: 2, Seconds: 1}}
	assert.Equal(t, 2.5, linkMedian(four, rate))
	three := []linkResult{{Msgs: 3, Seconds: 1}, {Msgs: 1, Seconds: 1}, {Msgs: 2, Seconds: 1}}
	assert.Equal(t, 2.0, linkMedian(three, rate))
	assert.Zero(t, linkMedian(nil, rate))
}
