package replication_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/transport"
)

// A node that lost its data pulls the data files of two peers, sent with
// SendFile, and ends up with the newest value of every key.
func TestBootstrapFromTwoPeers(t *testing.T) {
	c := newTestCluster(t, 3, 0)
	for _, id := range c.ids {
		replication.ServeBootstrap(c.transports[id], c.stores[id], t.TempDir())
	}
	big := bytes.Repeat([]byte("B"), 1<<20)
	for i := range 40 {
		key := fmt.Sprintf("k%02d", i)
		// n1 and n2 overlap on half the keys; n2 is newer there.
		c.stores["n1"].Apply(replication.Mutation{Timestamp: 1, Key: key, Value: []byte("n1's")})
		if i%2 == 0 {
			c.stores["n2"].Apply(replication.Mutation{Timestamp: 2, Key: key, Value: big})
		}
	}
	c.stores["n3"].Apply(replication.Mutation{Timestamp: 9, Key: "k00", Value: []byte("n3's, newest")})

	pulled, err := replication.Bootstrap(t.Context(), c.transports["n3"], c.stores["n3"],
		[]cluster.NodeID{"n1", "n2"}, nil, t.TempDir())
	require.NoError(t, err)
	require.Len(t, pulled, 2)
	for _, p := range pulled {
		require.NoError(t, p.Err)
		require.Positive(t, p.Bytes)
	}
	// Every key but k00 is applied at least once (39); n2's newer even keys
	// a second time (19 more) if n1's file loaded before them.
	applied := pulled[0].Applied + pulled[1].Applied
	require.True(t, applied >= 39 && applied <= 58, "applied %d", applied)

	require.Equal(t, 40, c.stores["n3"].Len())
	for i := range 40 {
		v, _, ok := c.stores["n3"].Get(fmt.Sprintf("k%02d", i))
		require.True(t, ok)
		switch {
		case i == 0:
			require.Equal(t, "n3's, newest", string(v))
		case i%2 == 0:
			require.Len(t, v, len(big))
		default:
			require.Equal(t, "n1's", string(v))
		}
	}
	stats := c.transports["n1"].Stats()
	require.Equal(t, uint64(1), stats.FilesSent, "the data file went by SendFile")
}

func TestBootstrapKeepsOwnedKeys(t *testing.T) {
	c := newTestCluster(t, 2, 0)
	replication.ServeBootstrap(c.transports["n1"], c.stores["n1"], t.TempDir())
	for _, key := range []string{"mine/1", "mine/2", "theirs/1"} {
		c.stores["n1"].Apply(replication.Mutation{Timestamp: 1, Key: key, Value: []byte("v")})
	}
	pulled, err := replication.Bootstrap(t.Context(), c.transports["n2"], c.stores["n2"], []cluster.NodeID{"n1"},
		func(key string) bool { return strings.HasPrefix(key, "mine/") }, t.TempDir())
	require.NoError(t, err)
	require.Equal(t, 2, pulled[0].Applied)
	require.Equal(t, 2, c.stores["n2"].Len())
}

func TestBootstrapFromAPeerThatDoesNotServe(t *testing.T) {
	c := newTestCluster(t, 2, 0)
	pulled, err := replication.Bootstrap(t.Context(), c.transports["n2"], c.stores["n2"], []cluster.NodeID{"n1"}, nil, t.TempDir())
	require.ErrorIs(t, err, transport.ErrUnknownVerb)
	require.ErrorIs(t, pulled[0].Err, transport.ErrUnknownVerb)
}
