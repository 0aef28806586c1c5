package transport_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quietLogger discards the transport's logs; tests assert on counters.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testCluster is n transports on loopback sharing one static membership.
type testCluster struct {
	t       testing.TB
	members *cluster.Static
	nodes   []*transport.Transport
	configs []transport.Config
}

// newCluster starts n nodes named n1..nN; tweak, when set, adjusts each
// node's config before it starts.
func newCluster(t testing.TB, n int, tweak func(i int, cfg *transport.Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, members: cluster.NewStatic()}
	for i := range n {
		cfg := transport.DefaultConfig()
		cfg.NodeID = cluster.NodeID(fmt.Sprintf("n%d", i+1))
		cfg.ClusterName = "test"
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Membership = c.members
		cfg.Telemetry.Logger = quietLogger
		cfg.Reconnect.MinBackoff = 5 * time.Millisecond
		cfg.Reconnect.MaxBackoff = 50 * time.Millisecond
		if tweak != nil {
			tweak(i, &cfg)
		}
		c.configs = append(c.configs, cfg)
		c.nodes = append(c.nodes, c.start(cfg))
	}
	t.Cleanup(c.close)
	return c
}

func (c *testCluster) start(cfg transport.Config) *transport.Transport {
	c.t.Helper()
	tr, err := transport.New(cfg)
	require.NoError(c.t, err)
	tr.Start()
	c.members.Add(cluster.Member{ID: cfg.NodeID, Addr: tr.Addr().String()})
	return tr
}

func (c *testCluster) close() {
	for _, n := range c.nodes {
		n.Close()
	}
}

func (c *testCluster) id(i int) cluster.NodeID { return c.configs[i].NodeID }

// handleAll registers h for verb on every node.
func (c *testCluster) handleAll(verb transport.Verb, h transport.HandlerFunc) {
	for _, n := range c.nodes {
		n.Handle(verb, h)
	}
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
