package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A period is 2^26 ns, 15 periods 1,006,632,960 ns. With a gap of 2^16 ns
// exactly 1024 messages fall in each period; with 2^14 ns, 4096.
const (
	gap16 = time.Duration(1) << 16 // 65,536 ns
	gap14 = time.Duration(1) << 14 // 16,384 ns
)

// observeEvery observes messages k = from..to inclusive at t0 + k×gap.
func observeEvery(s Strategy, from, to int, gap time.Duration) time.Time {
	var last time.Time
	for k := from; k <= to; k++ {
		last = t0.Add(time.Duration(k) * gap)
		s.Observe(last, 100)
	}
	return last
}

func TestTimeHorizonWait(t *testing.T) {
	tests := []struct {
		name    string
		trace   func(h *TimeHorizon) time.Time
		pending int
		wantGap time.Duration
		want    time.Duration
	}{
		{
			name:    "the period being filled never counts",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 1023, gap16) },
			pending: 1, wantGap: maxTrackedGap, want: 0,
		},
		{
			name:    "one complete period of 1024: 15 periods / 1024 = 983040 ns",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 1024, gap16) },
			pending: 1, wantGap: 983040, want: 0,
		},
		{
			name:    "one complete period of 4096: 245760 ns, still over the window",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 4096, gap14) },
			pending: 1, wantGap: 245760, want: 0,
		},
		{
			name:    "two complete periods of 4096: 122880 ns, one pending waits it",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 2*4096, gap14) },
			pending: 1, wantGap: 122880, want: 122880,
		},
		{
			name:    "a full horizon measures the true gap: 65536 → 131072",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 16*1024, gap16) },
			pending: 1, wantGap: gap16, want: 131072,
		},
		{
			name:    "a full horizon, three pending: 196608",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 16*1024, gap16) },
			pending: 3, wantGap: gap16, want: 196608,
		},
		{
			name:    "a full horizon, four pending: 262144 > window",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 16*1024, gap16) },
			pending: 4, wantGap: gap16, want: 0,
		},
		{
			name:    "EnoughMessages pending: write now",
			trace:   func(h *TimeHorizon) time.Time { return observeEvery(h, 0, 16*1024, gap16) },
			pending: EnoughMessages, wantGap: gap16, want: 0,
		},
		{
			name: "eight quiet periods slide out: (15360+1-8192) messages → 140414 ns",
			trace: func(h *TimeHorizon) time.Time {
				observeEvery(h, 0, 16*1024, gap16)
				return observeEvery(h, 24*1024, 24*1024, gap16)
			},
			pending: 1, wantGap: 140414, want: 140414,
		},
		{
			name: "a silence longer than the horizon clears it",
			trace: func(h *TimeHorizon) time.Time {
				observeEvery(h, 0, 16*1024, gap16)
				return observeEvery(h, 33*1024, 33*1024, gap16)
			},
			pending: 1, wantGap: maxTrackedGap, want: 0,
		},
		{
			name: "a late message inside the horizon counts: 15361 messages → 65531 ns",
			trace: func(h *TimeHorizon) time.Time {
				now := observeEvery(h, 0, 16*1024, gap16)
				h.Observe(t0.Add(5*1024*gap16), 100)
				return now
			},
			pending: 1, wantGap: 65531, want: 131062,
		},
		{
			name: "a message older than the horizon is ignored",
			trace: func(h *TimeHorizon) time.Time {
				now := observeEvery(h, 0, 16*1024, gap16)
				h.Observe(t0, 100)
				h.Observe(t0.Add(-time.Second), 100)
				return now
			},
			pending: 1, wantGap: gap16, want: 131072,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewTimeHorizon(us(200))
			now := tt.trace(h)
			assert.Equal(t, tt.wantGap, h.Stats().AverageGap)
			assert.Equal(t, tt.want, h.Wait(now, tt.pending, 100*tt.pending))
		})
	}
}

func TestTimeHorizonStats(t *testing.T) {
	h := NewTimeHorizon(us(200))
	now := observeEvery(h, 0, 16*1024, gap16)
	w := h.Wait(now, 1, 100)
	h.Flushed(now.Add(w), 2, 200, w, w)

	s := h.Stats()
	assert.Equal(t, NameTimeHorizon, s.Strategy)
	assert.Equal(t, us(200), s.Window)
	assert.Equal(t, uint64(1), s.Waited)
	assert.Equal(t, time.Duration(131072), s.RequestedWait)
}

// TestTimeHorizonAfterTheClockSteppedBack: times that step back, as a
// wall clock does when it is set back (times without Go's monotonic
// reading), start the horizon again. Every message after the step fell
// before the horizon and was ignored until the clock caught up with it,
// an hour here, with the average frozen where it was: a connection dense
// before the step waited at every write for that hour, however sparse.
func TestTimeHorizonAfterTheClockSteppedBack(t *testing.T) {
	h := NewTimeHorizon(us(200))
	now := observeEvery(h, 0, 16*1024, gap16)
	now = now.Add(-time.Hour) // the clock is set back
	for range 20 {
		now = now.Add(100 * time.Millisecond)
		h.Observe(now, 100)
	}
	assert.Greater(t, h.Stats().AverageGap, 50*time.Millisecond, "the sparse traffic's")
	assert.Zero(t, h.Wait(now, 1, 100), "sparse: no wait")
}
