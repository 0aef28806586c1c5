package bufpool

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGetSizesAndClasses(t *testing.T) {
	for _, n := range []int{0, 1, 64 << 10, 64<<10 + 1, 1 << 20, 3<<20 + 5, 1 << 30} {
		b := Get(n)
		assert.Len(t, b, n)
		assert.GreaterOrEqual(t, cap(b), max(n, 64<<10))
		assert.Zero(t, cap(b)&(cap(b)-1), "capacity is a power of two")
		Put(b)
	}
	huge := Get(1<<30 + 1)
	assert.Len(t, huge, 1<<30+1)
	Put(huge) // too large to pool: dropped
}

func TestPutReuses(t *testing.T) {
	a := Get(100 << 10)
	a[0] = 42
	Put(a)
	b := Get(120 << 10) // same class; the pool may give a back
	assert.Len(t, b, 120<<10)
	assert.Equal(t, 128<<10, cap(b))
	Put(b)
}

func TestPutRejectsForeignSlices(t *testing.T) {
	assert.Panics(t, func() { Put(make([]byte, 100<<10)) })
}

func TestReuseAllocatesNothing(t *testing.T) {
	Put(Get(1 << 20))
	allocs := testing.AllocsPerRun(100, func() { Put(Get(1 << 20)) })
	assert.LessOrEqual(t, allocs, 1.0) // the pool's boxed pointer, at most
}
