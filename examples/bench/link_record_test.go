package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
)

// TestArrivalRecorderWritesGaps: the recorder passes arrivals on to the
// strategy it wraps and writes them as gaps and sizes, keeping their
// order (an arrival stamped before the one ahead of it gives a negative
// gap); one that saw none writes no file.
func TestArrivalRecorderWritesGaps(t *testing.T) {
	dir := t.TempDir()
	inner := coalescing.NewDisabled()
	r := &arrivalRecorder{Strategy: inner, path: filepath.Join(dir, "a.arrivals"), title: "test"}
	t0 := time.Unix(100, 0)
	r.Observe(t0, 157)
	r.Observe(t0.Add(3*time.Microsecond), 160)
	r.Observe(t0.Add(2*time.Microsecond), 157)
	r.Flushed(t0.Add(5*time.Microsecond), 3, 474, 0, 0)
	require.NoError(t, r.write())
	got, err := os.ReadFile(r.path)
	require.NoError(t, err)
	assert.Equal(t, "# internode arrival trace: test\n"+
		"# 3 arrivals; per line: gap from the previous arrival in ns, encoded size in bytes\n"+
		"0 157\n3000 160\n-1000 157\n", string(got))
	assert.EqualValues(t, 3, inner.Stats().Messages, "the wrapped strategy saw the write")

	empty := &arrivalRecorder{Strategy: coalescing.NewDisabled(), path: filepath.Join(dir, "b.arrivals")}
	require.NoError(t, empty.write())
	assert.NoFileExists(t, empty.path)
}

func TestArrivalRecorderKeepsAtMost(t *testing.T) {
	r := &arrivalRecorder{Strategy: coalescing.NewDisabled()}
	for i := range recordedArrivals + 10 {
		r.Observe(time.Unix(0, int64(i)), 1)
	}
	assert.Len(t, r.at, recordedArrivals)
	assert.Len(t, r.sizes, recordedArrivals)
}
