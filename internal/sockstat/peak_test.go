package sockstat_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
)

func TestPeakTracksMaximumPerInterval(t *testing.T) {
	var p sockstat.Peak
	require.Zero(t, p.TakeAndReset(), "nothing observed yet")

	for _, v := range []int64{3, 9, 4} {
		p.Observe(v)
	}
	require.EqualValues(t, 9, p.TakeAndReset())

	// The next interval starts from the last reading, 4: the gauge was still
	// 4 even though nobody measured it again.
	require.EqualValues(t, 4, p.TakeAndReset())

	p.Observe(0)
	require.EqualValues(t, 4, p.TakeAndReset(), "4 held until the 0 was observed")
	require.Zero(t, p.TakeAndReset())
}

func TestPeakRaiseCountsInItsIntervalOnly(t *testing.T) {
	var p sockstat.Peak
	p.Observe(4)
	p.Raise(9)
	p.Raise(2)
	require.EqualValues(t, 9, p.TakeAndReset())
	require.EqualValues(t, 4, p.TakeAndReset(), "the next interval starts from the last value observed")
	p.Raise(7)
	p.Observe(0)
	require.EqualValues(t, 7, p.TakeAndReset())
	require.Zero(t, p.TakeAndReset(), "a reading raised before the 0 does not outlive its interval")
}

func TestPeakConcurrent(t *testing.T) {
	const goroutines, perGoroutine = 8, 10_000
	var p sockstat.Peak
	var wg sync.WaitGroup
	var taken sync.Map // values returned by TakeAndReset while observers run
	stop := make(chan struct{})
	takerDone := make(chan struct{})
	go func() {
		defer close(takerDone)
		for {
			select {
			case <-stop:
				return
			default:
				taken.Store(p.TakeAndReset(), true)
			}
		}
	}()
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				// Every goroutine ends on a value below its maximum, so the
				// final interval must remember the maximum, not the last value.
				p.Observe(int64((i*goroutines + g) % (goroutines * perGoroutine / 2)))
			}
		})
	}
	wg.Wait()
	close(stop)
	<-takerDone

	overall := p.TakeAndReset()
	taken.Range(func(k, _ any) bool {
		v := k.(int64)
		require.GreaterOrEqual(t, v, int64(0))
		require.Less(t, v, int64(goroutines*perGoroutine/2), "no value larger than any observed")
		overall = max(overall, v)
		return true
	})
	require.EqualValues(t, goroutines*perGoroutine/2-1, overall, "the maximum was reported in some interval")
}

func TestPeakDoesNotAllocate(t *testing.T) {
	var p sockstat.Peak
	allocs := testing.AllocsPerRun(1000, func() {
		p.Observe(42)
		p.TakeAndReset()
	})
	require.Zero(t, allocs)
}

func BenchmarkPeakObserve(b *testing.B) {
	var p sockstat.Peak
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var v int64
		for pb.Next() {
			v++
			p.Observe(v & 0xffff)
		}
	})
}

func TestPeakMaxDoesNotReset(t *testing.T) {
	var p sockstat.Peak
	p.Observe(5)
	p.Observe(3)
	first := p.Max()
	if second := p.Max(); first != 5 || second != 5 {
		t.Fatalf("Max = %d then %d, want 5 both times: reading does not reset", first, second)
	}
}
