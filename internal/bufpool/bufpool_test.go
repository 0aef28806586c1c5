package bufpool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGetSizesAndClasses(t *testing.T) {
	for n := range 300 << 10 {
		c := Cap(n)
		require.GreaterOrEqual(t, c, max(n, 1<<10), "n=%d", n)
		if n > 1<<10 && n <= 64<<10 {
			require.Less(t, c, 2*n, "n=%d: under 64 KiB, less than twice", n)
		}
		if n > 64<<10 {
			require.LessOrEqual(t, c*4, n*5+3, "n=%d: above 64 KiB, at most a quarter more", n)
		}
	}
	for _, n := range []int{0, 1, 1000, 64 << 10, 64<<10 + 1, 1 << 20, 3<<20 + 5, 1 << 30} {
		b := Get(n)
		assert.Len(t, b, n)
		assert.Equal(t, Cap(n), cap(b))
		Put(b)
	}
	assert.Equal(t, 80<<10, Cap(64<<10+1))
	assert.Equal(t, 7<<19, Cap(3<<20+5)) // 1.75 × 2 MiB
	assert.Equal(t, 1<<30, Cap(1<<30))
	huge := Get(1<<30 + 1)
	assert.Len(t, huge, 1<<30+1)
	Put(huge) // too large to pool: dropped
}

func TestPutReuses(t *testing.T) {
	a := Get(100 << 10)
	a[0] = 42
	Put(a)
	b := Get(110 << 10) // same class; the pool may give a back
	assert.Len(t, b, 110<<10)
	assert.Equal(t, 112<<10, cap(b))
	Put(b)
}

func TestPutRejectsForeignSlices(t *testing.T) {
	assert.Panics(t, func() { Put(make([]byte, 100<<10)) })
}

func TestReuseAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops what it is given at random")
	}
	Put(Get(1 << 20))
	allocs := testing.AllocsPerRun(100, func() { Put(Get(1 << 20)) })
	assert.Zero(t, allocs, "not even the box the pool keeps a slice in")
}
