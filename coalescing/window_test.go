package coalescing

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClampWindow(t *testing.T) {
	assert.Equal(t, time.Duration(0), clampWindow(-time.Second))
	assert.Equal(t, us(200), clampWindow(us(200)))
	assert.Equal(t, WindowLimit, clampWindow(time.Hour))
}

func TestWaitRound(t *testing.T) {
	var r waitRound
	steps := []struct {
		name string
		at   time.Duration // since t0
		ask  time.Duration
		want time.Duration
	}{
		{"zero does not open a round", 0, 0, 0},
		{"the first positive answer opens it", 0, us(200), us(200)},
		{"a later ask gets what is left", us(50), us(200), us(150)},
		{"a smaller ask is kept", us(60), us(10), us(10)},
		{"at the deadline: zero, and the round closes", us(200), us(200), 0},
		{"a new round after the stale one", us(300), us(40), us(40)},
	}
	for _, s := range steps {
		assert.Equal(t, s.want, r.bound(t0.Add(s.at), s.ask), s.name)
	}
	r.end()
	assert.Equal(t, us(200), r.bound(t0.Add(us(310)), us(200)), "a new round after end")
}
