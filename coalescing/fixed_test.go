package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFixedWait(t *testing.T) {
	tests := []struct {
		name    string
		window  time.Duration
		gaps    []time.Duration
		pending int
		want    time.Duration
	}{
		{"nothing pending", us(200), repeat(16, us(10)), 0, 0},
		{"one pending: the whole window", us(200), repeat(16, us(10)), 1, us(200)},
		{"sparse traffic still waits: Fixed does not adapt", us(200), repeat(16, time.Second), 1, us(200)},
		{"new connection still waits", us(200), nil, 1, us(200)},
		{"one short of EnoughMessages", us(200), nil, EnoughMessages - 1, us(200)},
		{"EnoughMessages pending: write now", us(200), nil, EnoughMessages, 0},
		{"zero window never waits", 0, nil, 1, 0},
		{"negative window is zero", -us(5), nil, 1, 0},
		{"window above the limit is clamped", time.Hour, nil, 1, WindowLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFixed(tt.window)
			now := observeGaps(f, tt.gaps, 100)
			assert.Equal(t, tt.want, f.Wait(now, tt.pending, 100*tt.pending))
		})
	}
}

func TestFixedRound(t *testing.T) {
	f := NewFixed(us(200))
	assert.Equal(t, us(200), f.Wait(t0, 1, 100))
	assert.Equal(t, us(150), f.Wait(t0.Add(us(50)), 2, 200), "asking again keeps the first deadline")
	assert.Zero(t, f.Wait(t0.Add(us(60)), EnoughMessages, 800), "full batch")
	f.Flushed(t0.Add(us(70)), EnoughMessages, 800, us(200), us(60))
	assert.Equal(t, us(200), f.Wait(t0.Add(us(100)), 1, 100), "a new write, a new window")

	s := f.Stats()
	assert.Equal(t, NameFixed, s.Strategy)
	assert.Equal(t, us(200), s.Window)
	assert.Equal(t, uint64(1), s.EarlyFlushes)
	assert.Equal(t, uint64(1), s.Waited)
	assert.Equal(t, us(60), s.ObservedWait)
}
