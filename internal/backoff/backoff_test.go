package backoff

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoffGrowsWithinBoundsAndResets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	ceilings := []time.Duration{10, 20, 40, 80, 100, 100, 100}
	for i, c := range ceilings {
		c *= time.Millisecond
		d := b.Next(r)
		assert.GreaterOrEqual(t, d, c/2, "step %d", i)
		assert.LessOrEqual(t, d, c, "step %d", i)
	}
	b.Reset()
	d := b.Next(r)
	assert.LessOrEqual(t, d, 10*time.Millisecond)
}

func TestBackoffJitterSpreads(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	seen := map[time.Duration]bool{}
	for range 100 {
		b := Backoff{Min: time.Second, Max: time.Second}
		seen[b.Next(r)] = true
	}
	assert.Greater(t, len(seen), 90, "delays are jittered, not lockstep")
}

func TestBackoffTinyMin(t *testing.T) {
	b := Backoff{Min: 1, Max: 1}
	assert.Equal(t, time.Duration(1), b.Next(rand.New(rand.NewPCG(0, 0))))
}

// TestBackoffStaysAtAMaxNearTheLargestDuration: with Max above half the
// largest Duration, doubling the ceiling past it must stop at Max, not
// overflow and start again from Min.
func TestBackoffStaysAtAMaxNearTheLargestDuration(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	const maxDelay = time.Duration(math.MaxInt64)
	b := Backoff{Min: time.Second, Max: maxDelay}
	for i := range 70 {
		d := b.Next(r)
		if i >= 34 { // 1 s doubled 34 times is past any Duration: the ceiling is Max
			require.GreaterOrEqual(t, d, maxDelay/2, "step %d", i)
		}
	}
}
