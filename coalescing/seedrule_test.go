package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDoublingWait(t *testing.T) {
	tests := []struct {
		name    string
		pending int
		gap     time.Duration
		window  time.Duration
		want    time.Duration
	}{
		{"nothing pending", 0, us(10), us(200), 0},
		{"one pending, 10µs gap: 10→20→40→80→160", 1, us(10), us(200), us(160)},
		{"three pending: 30→60→120", 3, us(10), us(200), us(120)},
		{"seven pending: 70→140", 7, us(10), us(200), us(140)},
		{"exactly the window is allowed", 2, us(100), us(200), us(200)},
		{"just over the window never waits", 2, us(101), us(200), 0},
		{"gap beyond the window", 1, us(250), us(200), 0},
		{"1 ns gap doubles to the largest power of two under the window", 1, 1, us(200), 131072},
		{"zero window", 1, us(10), 0, 0},
		{"zero gap is not an estimate", 1, 0, us(200), 0},
		{"huge pending does not overflow", 1 << 62, us(10), us(200), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, doublingWait(tt.pending, tt.gap, tt.window))
		})
	}
}
