package replication_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCluster is n nodes on loopback, each with a Store, and a Replicator
// coordinating from n1.
type testCluster struct {
	members    *cluster.Static
	ids        []cluster.NodeID
	transports map[cluster.NodeID]*transport.Transport
	stores     map[cluster.NodeID]*replication.Store
	coord      *replication.Replicator

	mu      sync.Mutex
	replies []replication.Reply
}

func newTestCluster(t *testing.T, n int, timeout time.Duration) *testCluster {
	nodes := transporttest.New(t, n, transporttest.Options{ClusterName: "replication-test"})
	c := &testCluster{members: nodes.Members,
		transports: map[cluster.NodeID]*transport.Transport{}, stores: map[cluster.NodeID]*replication.Store{}}
	for i, tr := range nodes.Nodes {
		id := nodes.ID(i)
		store := replication.NewStore()
		tr.Handle(replication.Verb, store)
		c.ids = append(c.ids, id)
		c.transports[id] = tr
		c.stores[id] = store
	}
	var err error
	c.coord, err = replication.New(replication.Config{
		Self: "n1", Requester: c.transports["n1"], Local: c.stores["n1"], Timeout: timeout,
		OnReply: func(r replication.Reply) {
			c.mu.Lock()
			c.replies = append(c.replies, r)
			c.mu.Unlock()
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { // before the nodes close: cleanups run last first
		require.NoError(t, c.coord.Drain(context.Background()))
	})
	return c
}

// keyOwnedBy returns a key whose replicas include all of want.
func (c *testCluster) keyOwnedBy(want ...cluster.NodeID) string {
	for i := 0; ; i++ {
		key := fmt.Sprintf("key-%d", i)
		replicas := replication.Replicas(key, c.ids, 3)
		if !slices.ContainsFunc(want, func(id cluster.NodeID) bool { return !slices.Contains(replicas, id) }) {
			return key
		}
	}
}

func TestReplicateMixedSizes(t *testing.T) {
	c := newTestCluster(t, 4, 5*time.Second)
	random := rand.NewChaCha8([32]byte{1})
	sizes := []int{0, 100, 4 << 10, 60 << 10, 100 << 10, 1 << 20}
	values := map[string][]byte{}
	for i := range 60 {
		key := fmt.Sprintf("key-%d", i)
		value := make([]byte, sizes[i%len(sizes)])
		random.Read(value)
		values[key] = value
		require.NoError(t, c.coord.Write(t.Context(), c.ids, key, value))
	}
	require.NoError(t, c.coord.Drain(t.Context()))

	for key, value := range values {
		for _, id := range replication.Replicas(key, c.ids, 3) {
			got, _, ok := c.stores[id].Get(key)
			require.True(t, ok, "%s has %s", id, key)
			require.True(t, bytes.Equal(value, got), "%s's copy of %s", id, key)
		}
	}
	counts := c.coord.Counts()
	require.Equal(t, uint64(3*len(values)), counts.Requests+counts.Local)
	require.Equal(t, counts.Requests, counts.Acked)
	require.Zero(t, counts.Failed)
	require.Zero(t, counts.InFlight())

	// Values above 64 KiB went on the large lane, the rest on the small one.
	sent := map[routing.Lane]uint64{}
	for _, cs := range c.transports["n1"].Stats().Conns {
		sent[cs.Lane] += cs.MessagesSent
	}
	require.Positive(t, sent[routing.Small])
	require.Positive(t, sent[routing.Large])
	require.Zero(t, sent[routing.Urgent])
}

func TestQuorumWithOneReplicaDown(t *testing.T) {
	c := newTestCluster(t, 4, time.Second)
	require.NoError(t, c.transports["n4"].Close())
	key := c.keyOwnedBy("n4")
	value := bytes.Repeat([]byte("v"), 100<<10)

	start := time.Now()
	require.NoError(t, c.coord.Write(t.Context(), c.ids, key, value), "2 of 3 is enough")
	require.Less(t, time.Since(start), time.Second, "returned at quorum, not at n4's timeout")
	require.NoError(t, c.coord.Drain(t.Context()))

	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.replies, 3, "every replica has an outcome, n4's too")
	for _, r := range c.replies {
		if r.Replica == "n4" {
			require.Error(t, r.Err)
		} else {
			require.NoError(t, r.Err)
		}
	}
	counts := c.coord.Counts()
	require.Equal(t, uint64(1), counts.Failed)
	require.Zero(t, counts.InFlight())
}

func TestQuorumErrorWithTwoReplicasDown(t *testing.T) {
	c := newTestCluster(t, 4, 300*time.Millisecond)
	require.NoError(t, c.transports["n3"].Close())
	require.NoError(t, c.transports["n4"].Close())
	key := c.keyOwnedBy("n3", "n4")

	err := c.coord.Write(t.Context(), c.ids, key, []byte("v"))
	var qe *replication.QuorumError
	require.ErrorAs(t, err, &qe)
	require.Equal(t, 2, qe.Need)
	// The requests to the closed replicas fail at their first dial, so
	// the quorum may be ruled out before the live replica's ack arrives.
	require.LessOrEqual(t, qe.Acked, 1)
	require.Len(t, qe.Failures, 2)
	var op *transport.OpError
	require.ErrorAs(t, err, &op, "the transport's errors are in the chain")
}

func TestWriteUnavailable(t *testing.T) {
	c := newTestCluster(t, 1, time.Second)
	require.ErrorIs(t, c.coord.Write(t.Context(), c.ids, "k", []byte("v")), replication.ErrUnavailable)
	require.Zero(t, c.coord.Counts().Requests)
}

// acker acknowledges every request at once.
type acker struct{}

func (acker) Request(context.Context, cluster.NodeID, transport.Verb, []byte) ([]byte, error) {
	return nil, nil
}

// Drain may be called while writes go on (a node draining as it shuts
// down, its clients not yet stopped): it must not crash the process, as a
// WaitGroup reused by Write while Drain waits did ("sync: WaitGroup is
// reused before previous Wait has returned").
func TestDrainWhileWriting(t *testing.T) {
	r, err := replication.New(replication.Config{Self: "n1", Requester: acker{}})
	require.NoError(t, err)
	members := []cluster.NodeID{"n2", "n3", "n4"}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				_ = r.Write(context.Background(), members, "k", []byte("v"))
			}
		}
	}()
	for range 20000 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Drain returns at once if nothing runs, else with ctx's error
		_ = r.Drain(ctx)
		go func() { _ = r.Drain(context.Background()) }() // a waiter left behind
	}
	close(stop)
	<-done
	require.NoError(t, r.Drain(context.Background()))
}
