package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waiter blocks until release is closed, then makes a system call (a
// write to out) and tells done.
func waiter(release <-chan struct{}, out *os.File, done chan<- struct{}) {
	<-release
	_, _ = out.Write([]byte("x"))
	done <- struct{}{}
}

// TestSummarizeByRole: goroutines are summed under the function they were
// started with, their blocked time and their waits for a processor
// counted, and each turn they took (woken, then blocked or exited) timed
// with its system calls.
func TestSummarizeByRole(t *testing.T) {
	sink, err := os.Create(filepath.Join(t.TempDir(), "sink"))
	require.NoError(t, err)
	defer sink.Close()
	var buf bytes.Buffer
	require.NoError(t, trace.Start(&buf))
	synctest.Test(t, func(t *testing.T) {
		release, done := make(chan struct{}), make(chan struct{}, 3)
		for range 3 {
			go waiter(release, sink, done)
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
	// Each ran until it blocked on release, and again, once released,
	// until it exited (under -race perhaps in more turns); one of those
	// turns held the write.
	assert.GreaterOrEqual(t, len(r.turns), 6)
	require.Len(t, r.turnSys, len(r.turns))
	inSyscalls := 0
	for i, d := range r.turnSys {
		assert.LessOrEqual(t, d, r.turns[i], "a turn's system calls within it")
		if d > 0 {
			inSyscalls++
		}
	}
	assert.Equal(t, 3, inSyscalls, "the turns that wrote")

	var out bytes.Buffer
	s.print(&out, 100)
	assert.Contains(t, out.String(), "tracestat.waiter")
}

func TestPercentile(t *testing.T) {
	assert.Zero(t, percentile(nil, 0.5))
	assert.EqualValues(t, 300, percentile([]time.Duration{500, 100, 300, 200, 400}, 0.5))
}
