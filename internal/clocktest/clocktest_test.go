package clocktest

import (
	"testing"
	"time"
)

// TestWallStepped: the stepped reading's wall time moves by the step, its
// monotonic time (what Sub uses when both readings have one) does not.
func TestWallStepped(t *testing.T) {
	now := time.Now()
	for _, d := range []time.Duration{time.Hour, -time.Hour, 3 * time.Second} {
		s := WallStepped(now, d)
		if got := s.Sub(now); got != 0 {
			t.Errorf("step %v: monotonic reading moved by %v", d, got)
		}
		if got := s.Round(0).Sub(now.Round(0)); got != d {
			t.Errorf("step %v: wall reading moved by %v", d, got)
		}
	}
	plain := now.Round(0) // no monotonic reading
	if s := WallStepped(plain, time.Hour); !s.Equal(plain) {
		t.Errorf("a reading without a monotonic one changed: %v → %v", plain, s)
	}
}
