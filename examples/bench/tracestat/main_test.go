package main

import (
	"bytes"
	"runtime/trace"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waiter blocks until release is closed, then tells done.
func waiter(release <-chan struct{}, done chan<- struct{}) {
	<-release
	done <- struct{}{}
}

// TestSummarizeByRole: goroutines are summed under the function they were
// started with, their blocked time and their waits for a processor
// counted.
func TestSummarizeByRole(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, trace.Start(&buf))
	synctest.Test(t, func(t *testing.T) {
		release, done := make(chan struct{}), make(chan struct{}, 3)
		for range 3 {
			go waiter(release, done)
		}
		synctest.Wait() // all three blocked on release
		close(release)
		for range 3 {
			<-done
		}
	})
	trace.Stop()

	s, err := summarize(&buf)
	require.NoError(t, err)
	var r *role
	for name, rl := range s.roles {
		if strings.HasSuffix(name, "tracestat.waiter") {
			r = rl
		}
	}
	require.NotNil(t, r, "the waiters' role among %d", len(s.roles))
	assert.Equal(t, 3, r.goroutines)
	assert.Positive(t, r.time[blocked], "each blocked on release")
	assert.Positive(t, r.time[running])
	assert.GreaterOrEqual(t, len(r.waits), 3, "each was made runnable and ran")

	var out bytes.Buffer
	s.print(&out, 100)
	assert.Contains(t, out.String(), "tracestat.waiter")
}

func TestPercentile(t *testing.T) {
	assert.Zero(t, percentile(nil, 0.5))
	assert.EqualValues(t, 300, percentile([]time.Duration{500, 100, 300, 200, 400}, 0.5))
}
