package coalescing

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maxWindowOf is the most a strategy made by ByName(name, window) may wait.
func maxWindowOf(name string, window time.Duration) time.Duration {
	if name == NameDisabled {
		return 0
	}
	return window
}

// For every strategy and many random traces, driven like the transport's
// writer: no answer is negative or above the window, the total wait for one
// write stays within the window, and everything observed is written.
func TestPropertyWaitWithinWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			for trace := range 40 {
				window := []time.Duration{us(200), us(50), us(1000), time.Nanosecond}[trace%4]
				factory, err := ByName(name, window)
				require.NoError(t, err)
				s := factory()
				arrivals := mixedTrace(rng, 1000)
				asks, writes := simulateWriter(s, arrivals, time.Duration(rng.Int64N(int64(us(30)))))
				limit := maxWindowOf(name, window)
				for i, a := range asks {
					require.GreaterOrEqual(t, a.answer, time.Duration(0), "trace %d ask %d", trace, i)
					require.LessOrEqual(t, a.answer, limit, "trace %d ask %d", trace, i)
					if name == NameAdaptive {
						require.LessOrEqual(t, a.answer, a.window, "within the tuned window")
					}
				}
				total := 0
				for i, w := range writes {
					require.LessOrEqual(t, w.observed, limit, "trace %d write %d", trace, i)
					total += w.messages
				}
				assert.Equal(t, len(arrivals), total)
				assert.Equal(t, uint64(len(writes)), s.Stats().Writes)
			}
		})
	}
}

// Direct calls with arbitrary arguments, including nonsense a buggy writer
// might pass: answers stay within [0, window].
func TestPropertyWaitArbitraryCalls(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range Names() {
		factory, err := ByName(name, 0)
		require.NoError(t, err)
		s := factory()
		limit := maxWindowOf(name, DefaultWindow)
		now := t0
		for i := range 40_000 {
			now = now.Add(time.Duration(rng.Int64N(int64(us(400)))) - us(100))
			switch rng.IntN(3) {
			case 0:
				s.Observe(now.Add(-time.Duration(rng.Int64N(int64(time.Millisecond)))), rng.IntN(1<<17)-10)
			case 1:
				w := s.Wait(now, rng.IntN(300)-5, rng.IntN(1<<17)-10)
				require.GreaterOrEqual(t, w, time.Duration(0), "%s call %d", name, i)
				require.LessOrEqual(t, w, limit, "%s call %d", name, i)
			case 2:
				req := time.Duration(rng.Int64N(int64(us(300))))
				s.Flushed(now, rng.IntN(300), rng.IntN(1<<17), req, req+time.Duration(rng.Int64N(int64(us(100)))))
			}
		}
		assert.GreaterOrEqual(t, s.Stats().Window, time.Duration(0))
		assert.LessOrEqual(t, s.Stats().Window, limit)
	}
}
