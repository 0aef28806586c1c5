package transport

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// TestStageWaitIsNeverNegative: a worker reads the clock, then takes the
// stage's lock; a message queued in between (its handler's worker was
// busy, or the lock contended) starts with a wait of its own, not a
// negative one that takes time off StageStats.WaitSum and records a wait
// below zero.
func TestStageWaitIsNeverNegative(t *testing.T) {
	s := newStage("read", 1, 0)
	p := &peer{id: "a"}
	now := time.Now() // the worker's reading, before it takes the lock
	w := &work{ic: &inConn{peer: p}, h: wire.Header{ID: 1}, queuedAt: monoNanos() + int64(time.Millisecond)}
	s.submit(w)
	got, _ := s.take(true, nil, now)
	require.Same(t, w, got)
	st := s.stats(9)
	assert.EqualValues(t, 1, st.Started)
	assert.GreaterOrEqual(t, st.WaitSum, time.Duration(0), "the total wait of the messages started")
	assert.GreaterOrEqual(t, st.MaxWait, time.Duration(0))
	assert.Zero(t, stageWait(now, w.queuedAt), "the wait runStage records")
}
