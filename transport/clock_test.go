package transport

import (
	"testing"
	"time"
)

func TestClockFollowsTimeNow(t *testing.T) {
	var c clock
	for range 1000 {
		before := time.Now().UnixNano()
		got := c.unixNano()
		after := time.Now().UnixNano()
		// Readings may differ from time.Now's by the clock's adjustment
		// within a second, far less than a millisecond.
		if slack := int64(time.Millisecond); got < before-slack || got > after+slack {
			t.Fatalf("clock %d outside [%d, %d]", got, before, after)
		}
	}
}

func BenchmarkClock(b *testing.B) {
	var c clock
	for b.Loop() {
		_ = c.unixNano()
	}
}
