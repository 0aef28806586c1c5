package coalescing

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The writer calls a strategy for every message on the hot path: none of
// its methods may allocate.
func TestZeroAllocs(t *testing.T) {
	for _, name := range Names() {
		factory, err := ByName(name, 0)
		require.NoError(t, err)
		s := factory()
		now := t0
		step := func() {
			now = now.Add(us(3))
			s.Observe(now, 100)
			w := s.Wait(now, 1, 100)
			s.Flushed(now.Add(w), 1, 100, w, w)
			_ = s.Stats()
		}
		for range 100 { // warm up past the sparse start
			step()
		}
		require.Zero(t, testing.AllocsPerRun(1000, step), name)
	}
}

// BenchmarkAdaptive measures one message's worth of work for the writer:
// Observe, Wait and Flushed on a dense connection.
func BenchmarkAdaptive(b *testing.B) {
	a := NewAdaptive(AdaptiveConfig{})
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(us(5))
		a.Observe(now, 100)
		w := a.Wait(now, 1, 100)
		a.Flushed(now.Add(w), 1+int(w/us(5)), 100, w, w)
	}
}

// BenchmarkStrategies compares the per-message cost of every strategy.
func BenchmarkStrategies(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			factory, err := ByName(name, 0)
			require.NoError(b, err)
			s := factory()
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(us(5))
				s.Observe(now, 100)
				w := s.Wait(now, 1, 100)
				s.Flushed(now.Add(w), 1+int(w/us(5)), 100, w, w)
			}
		})
	}
}
