package transport_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quietLogger discards the transport's logs; tests assert on counters.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newCluster starts n nodes named n1..nN on loopback (see
// transporttest); tweak, when set, adjusts each node's config before it
// starts.
func newCluster(t testing.TB, n int, tweak func(i int, cfg *transport.Config)) *transporttest.Cluster {
	t.Helper()
	return transporttest.New(t, n, transporttest.Options{Tweak: tweak})
}

// handleAll registers h for verb on every node of c.
func handleAll(c *transporttest.Cluster, verb transport.Verb, h transport.HandlerFunc) {
	c.HandleAll(verb, h)
}

// waitFor waits until cond holds, failing the test after timeout. It polls
// a condition on counters; it never sleeps in the hope that work finished.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, timeout, time.Millisecond, what)
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// counter is a thread-safe tally keyed by anything.
type counter[K comparable] struct {
	mu sync.Mutex
	m  map[K]int
}

func (c *counter[K]) add(k K) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[K]int)
	}
	c.m[k]++
	return c.m[k]
}

// promptly is how soon a peer's death or return must show: the
// requirement, or three times it under the race detector.
func promptly(d time.Duration) time.Duration {
	if raceEnabled {
		return 3 * d
	}
	return d
}

// within waits for a value from ch, or fails after d (as the package's
// internal tests' within does).
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}
