package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLargeMixedInternodeTakesEverySize: at the default -large-size
// (16 MiB) large-mixed floods with 16 MiB and 64 MiB messages and probes
// with 1 MiB ones. internode, configured as the scenario runs it, must
// accept and deliver each of them, as the baselines do; a size it refused
// would be retried for the whole run and only counted in send_errors, and
// internode's MB/s and probe latency would be measured without that flood.
func TestLargeMixedInternodeTakesEverySize(t *testing.T) {
	opts := Options{LargeSize: defaultLargeSize}
	entry, ok := findSystem("internode")
	require.True(t, ok)
	sys := scenarioLargeMixed.newSystem(entry, opts)

	var mu sync.Mutex
	got := map[int]int{}
	require.NoError(t, sys.Start(context.Background(), Hooks{OnMessage: func(p []byte) {
		mu.Lock()
		got[len(p)]++
		mu.Unlock()
	}}))
	defer sys.Close()

	large := opts.largeSize()
	sizes := []int{large / 16, large, 4 * large} // probe, flood, huge flood (loadLargeMixed)
	for _, n := range sizes {
		assert.NoError(t, sys.Send(context.Background(), make([]byte, n)), "a message of %d bytes", n)
	}
	assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range sizes {
			if got[n] != 1 {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "every size delivered once")
}
