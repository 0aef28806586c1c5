package coalescing

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// On sparse traffic (every gap ≥ 1 ms, five times MaxWindow) Adaptive never
// waits, so every message sees exactly the latency it sees with Disabled.
func TestAdaptiveSparseNeverWaits(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trace := range 20 {
		arrivals := make([]arrival, 1000)
		at := t0
		for i := range arrivals {
			at = at.Add(time.Millisecond + time.Duration(rng.Int64N(int64(9*time.Millisecond))))
			arrivals[i] = arrival{at: at, size: 1 + rng.IntN(4096)}
		}
		a := NewAdaptive(AdaptiveConfig{})
		asks, writes := simulateWriter(a, arrivals, us(20))
		for i, ask := range asks {
			require.Zero(t, ask.answer, "trace %d ask %d", trace, i)
		}
		assert.Zero(t, a.Stats().Waited)

		_, baseline := simulateWriter(NewDisabled(), arrivals, us(20))
		require.Len(t, writes, len(baseline))
		for i := range writes {
			require.Equal(t, baseline[i].latency, writes[i].latency, "trace %d write %d", trace, i)
		}
	}
}

// On dense open-loop traffic (exponential gaps, mean 5µs, small messages)
// waiting pays, so after warm-up the window stays in a band near MaxWindow
// and batches are far larger than Disabled's.
func TestAdaptiveDenseConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const warmUp = 100 // writes; the window reaches MaxWindow in 7 periods of 8
	for trace := range 4 {
		arrivals := poissonTrace(rng, 25_000, us(5), 50, 200)
		a := NewAdaptive(AdaptiveConfig{})
		_, writes := simulateWriter(a, arrivals, us(10))
		require.Greater(t, len(writes), 4*warmUp)
		for i, w := range writes[warmUp:] {
			require.GreaterOrEqual(t, w.window, DefaultWindow/2, "trace %d write %d", trace, warmUp+i)
			require.LessOrEqual(t, w.window, DefaultWindow, "trace %d write %d", trace, warmUp+i)
		}
		_, baseline := simulateWriter(NewDisabled(), arrivals, us(10))
		s := a.Stats()
		perWrite := float64(s.Messages) / float64(s.Writes)
		assert.Greater(t, perWrite, 4*float64(len(arrivals))/float64(len(baseline)), "trace %d", trace)
		assert.Greater(t, perWrite, 25.0, "trace %d", trace)
	}
}

// On dense traffic of 4 KiB messages a frame fills in about 16 messages:
// Wait answers zero whenever 64 KiB are pending, and writes end early, well
// before the window, carrying about a frame.
func TestAdaptiveFlushesFullFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	arrivals := poissonTrace(rng, 20_000, us(5), 4096, 4096)
	a := NewAdaptive(AdaptiveConfig{})
	asks, writes := simulateWriter(a, arrivals, us(10))
	for i, ask := range asks {
		if ask.pendingBytes >= DefaultFlushBytes {
			require.Zero(t, ask.answer, "ask %d", i)
		}
	}
	s := a.Stats()
	assert.Greater(t, s.EarlyFlushes, s.Writes/2)
	assert.Greater(t, float64(s.Bytes)/float64(s.Writes), 56.0*1024, "about a frame a write")
	assert.Less(t, s.ObservedWait/time.Duration(s.Writes), DefaultWindow/2, "waits end at the frame, not the window")
	full := 0
	for _, w := range writes {
		if w.bytes >= DefaultFlushBytes {
			full++
		}
	}
	assert.Greater(t, full, len(writes)/2)
}

// When waiting never grows batches (closed-loop traffic: the next messages
// wait for the answers to these), the window shrinks to zero and stays there
// but for rare probes. The writer reports one message per write however long
// it waited, while arrivals look dense (1µs gaps).
func TestAdaptiveShrinksWhenWaitingDoesNotPay(t *testing.T) {
	d := newAdaptiveDriver(AdaptiveConfig{})
	for d.a.Stats().Window < DefaultWindow { // first make waiting pay
		d.period(1, 41, us(40))
	}
	require.Equal(t, DefaultWindow, d.a.Stats().Window)

	var windows []time.Duration
	var waited int
	const writes = 20_000
	for i := range writes {
		w := d.write(1, 1, d.a.Stats().Window)
		if i >= writes/2 && w > 0 {
			waited++
		}
		windows = append(windows, d.a.Stats().Window)
	}
	// Halving every period: 200 → 100 → 50 → 25 → 12.5 → 6.25 → 0 µs.
	for i := 1; i < 6*adaptivePeriodWrites; i++ {
		require.LessOrEqual(t, windows[i], windows[i-1], "write %d", i)
	}
	assert.Zero(t, windows[6*adaptivePeriodWrites-1], "zero after six periods")
	assert.Less(t, float64(waited)/float64(writes/2), 0.01, "probes only")
	assert.Zero(t, windows[len(windows)-1])
}
