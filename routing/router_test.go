package routing

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoute(t *testing.T) {
	const gossip, read = 7, 9
	r := NewRouter(0, map[uint32]Lane{gossip: Urgent, 11: Large})
	tests := []struct {
		name string
		verb uint32
		size int
		want Lane
	}{
		{"empty message", read, 0, Small},
		{"at threshold", read, DefaultThreshold, Small},
		{"one above threshold", read, DefaultThreshold + 1, Large},
		{"huge", read, 1 << 30, Large},
		{"urgent override", gossip, 100, Urgent},
		{"urgent override at threshold", gossip, DefaultThreshold, Urgent},
		{"urgent override cannot carry bulk", gossip, DefaultThreshold + 1, Large},
		{"large override for a small message", 11, 10, Large},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, r.Route(tt.verb, tt.size))
		})
	}
}

func TestRouterThreshold(t *testing.T) {
	r := NewRouter(1000, nil)
	assert.Equal(t, 1000, r.Threshold())
	assert.Equal(t, Small, r.Route(1, 1000))
	assert.Equal(t, Large, r.Route(1, 1001))
	assert.Equal(t, DefaultThreshold, NewRouter(-5, nil).Threshold())
}

func TestRouterCopiesOverrides(t *testing.T) {
	overrides := map[uint32]Lane{1: Urgent}
	r := NewRouter(0, overrides)
	overrides[1] = Large
	assert.Equal(t, Urgent, r.Route(1, 10))
}

func TestLaneNames(t *testing.T) {
	for _, l := range Lanes {
		got, err := ParseLane(l.String())
		require.NoError(t, err)
		assert.Equal(t, l, got)
		assert.True(t, l.Valid())
	}
	_, err := ParseLane("bulk")
	assert.Error(t, err)
	assert.False(t, Lane(3).Valid())
	assert.Equal(t, "lane(9)", Lane(9).String())
	// The numeric values are sent in the handshake: pin them.
	assert.Equal(t, []Lane{0, 1, 2}, Lanes[:])
}

func ExampleRouter_Route() {
	const verbGossip = 1
	r := NewRouter(0, map[uint32]Lane{verbGossip: Urgent})
	fmt.Println(r.Route(verbGossip, 200), r.Route(2, 200), r.Route(2, 1<<20))
	// Output: urgent small large
}
