package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNames(t *testing.T) {
	assert.Equal(t, []string{"adaptive", "disabled", "fixed", "movingavg", "timehorizon"}, Names())
	assert.Contains(t, Names(), DefaultName)
	n := Names()
	n[0] = "changed"
	assert.Equal(t, NameAdaptive, Names()[0], "each call returns a fresh slice")
}

func TestByName(t *testing.T) {
	tests := []struct {
		name       string
		window     time.Duration
		wantName   string
		wantWindow time.Duration // Stats().Window of a new strategy
	}{
		{"disabled", 0, NameDisabled, 0},
		{"fixed", 0, NameFixed, DefaultWindow},
		{"fixed", us(500), NameFixed, us(500)},
		{"movingavg", us(100), NameMovingAverage, us(100)},
		{"timehorizon", 0, NameTimeHorizon, DefaultWindow},
		{"adaptive", 0, NameAdaptive, DefaultWindow / 4},
		{"adaptive", us(400), NameAdaptive, us(100)},
		{" FIXED ", 0, NameFixed, DefaultWindow},
		{"MovingAvg", 0, NameMovingAverage, DefaultWindow},
		{"fixed", WindowLimit, NameFixed, WindowLimit},
	}
	for _, tt := range tests {
		factory, err := ByName(tt.name, tt.window)
		require.NoError(t, err, tt.name)
		s := factory()
		assert.Equal(t, tt.wantName, s.Stats().Strategy, tt.name)
		assert.Equal(t, tt.wantWindow, s.Stats().Window, "%s %v", tt.name, tt.window)
		assert.NotSame(t, s, factory(), "one strategy per connection")
	}
}

func TestByNameAdaptiveMaxWindow(t *testing.T) {
	factory, err := ByName(NameAdaptive, us(400))
	require.NoError(t, err)
	cfg := factory().(*Adaptive).Config()
	want := DefaultAdaptiveConfig()
	want.MaxWindow = us(400)
	assert.Equal(t, want, cfg)
}

func TestByNameErrors(t *testing.T) {
	for _, name := range []string{"", "nagle", "MOVINGAVERAGE", "org.apache.cassandra.utils.CoalescingStrategies"} {
		_, err := ByName(name, 0)
		assert.ErrorIs(t, err, ErrUnknownStrategy, "%q", name)
	}
	for _, window := range []time.Duration{-1, WindowLimit + 1} {
		_, err := ByName(NameFixed, window)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%v", window)
	}
}
