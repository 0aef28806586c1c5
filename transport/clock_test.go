package transport

import (
	"testing"
	"time"
)

func TestClockFollowsTimeNow(t *testing.T) {
	var c clock
	for range 1000 {
		before := time.Now()
		got := c.now()
		after := time.Now()
		// Wall readings may differ from time.Now's by the clock's
		// adjustment within a second; the monotonic ones must be ordered.
		if got.Before(before) || got.After(after) {
			t.Fatalf("clock %v outside [%v, %v]", got, before, after)
		}
		if d := got.UnixNano() - before.UnixNano(); d < -int64(time.Millisecond) || d > int64(time.Second) {
			t.Fatalf("wall time off by %v", time.Duration(d))
		}
	}
}

func BenchmarkClock(b *testing.B) {
	var c clock
	for b.Loop() {
		_ = c.now()
	}
}
