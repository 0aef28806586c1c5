package transport

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// A stage's expiry timer stays set for the deadline of the last message
// that passed through it (expiries.add: a burst costs one setting), and
// the stage's turn, emptied by removing its first peer, kept that peer in
// the slot beyond its end: the timer kept the stage, the stage the peer's
// entry, and the entry its transport. A stranger's entry forgotten by the
// janitor, and a closed transport with all it held, stayed in memory until
// that deadline passed, or for a live transport's turn, until a longer
// turn wrote over the slot.

// TestAForgottenStrangersEntryIsNotKeptByAStage: a stranger whose request
// ran in a stage is forgotten once quiet; its entry must go with it.
func TestAForgottenStrangersEntryIsNotKeptByAStage(t *testing.T) {
	n1 := startNode(t, "n1", cluster.NewStatic(), func(c *Config) { c.Security.AcceptUnknownPeers = true })
	n1.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
	ghost := startNode(t, "ghost", cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err := ghost.Request(ctx, "n1", 1, nil) // a request runs in the verb's stage
	require.NoError(t, err)
	entry := weak.Make(n1.peerStats("ghost"))
	require.NotNil(t, entry.Value())
	require.NoError(t, ghost.Close())
	eventually(t, func() bool {
		n1.forgetQuietStrangers() // the janitor
		return n1.peerStats("ghost") == nil
	}, "the stranger forgotten")
	requireCollected(t, entry, "the forgotten stranger's entry is still reachable")
}

// TestAClosedTransportIsNotKeptByAStage: a transport that ran a request
// in a stage, with its deadline an hour away, is not kept once closed.
func TestAClosedTransportIsNotKeptByAStage(t *testing.T) {
	static := cluster.NewStatic()
	n1 := startNode(t, "n1", static, nil)
	closed := func() weak.Pointer[Transport] {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = "n2", "test", "127.0.0.1:0"
		cfg.Membership = cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
		cfg.Telemetry.Logger = discardLogger
		n2, err := New(cfg)
		require.NoError(t, err)
		n2.Start()
		n2.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
		static.Add(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		_, err = n1.Request(ctx, "n2", 1, nil)
		require.NoError(t, err)
		require.NoError(t, n2.Close())
		return weak.Make(n2)
	}()
	requireCollected(t, closed, "the closed transport is still reachable")
}

// requireCollected waits for p's value to be collected: a goroutine
// that Close or the janitor does not wait for (a timer's, an
// unregistering's) may hold it for a moment, not for an hour.
func requireCollected[T any](t *testing.T, p weak.Pointer[T], msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		runtime.GC()
		return p.Value() == nil
	}, 5*time.Second, 10*time.Millisecond, msg)
}
