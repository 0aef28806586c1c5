package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestAStaleAddressThatIsThisNodesOwnIsNotARefusal: n1's membership
// gives nx's old address, where n1 itself now listens (n1 restarted and
// was given the address nx had, before the membership noticed nx went
// away). A dial that reaches another member there is a failed dial,
// tried again, and one-way messages wait for nx (wire.CapAcceptorID);
// under TLS, where n1's own certificate names n1, so is this one. Without
// TLS, n1's acceptor refused the Hello as its own ID (RefusedSelf), a
// refusal for good: the request failed with ErrRefused, and the one-way
// message queued for nx was dropped as refused.
func TestAStaleAddressThatIsThisNodesOwnIsNotARefusal(t *testing.T) {
	static := cluster.NewStatic()
	n1 := startNode(t, "n1", static, func(c *Config) {
		c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Millisecond, 20*time.Millisecond
	})
	static.Add(cluster.Member{ID: "nx", Addr: n1.Addr().String()}) // stale: n1 lives there now
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := n1.Request(ctx, "nx", 1, []byte("q"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrRefused, "a dial that reached this node at nx's stale address")
	assert.ErrorIs(t, err, ErrConnectionReset)

	require.NoError(t, n1.Send(ctx, "nx", 1, []byte("m")))
	eventually(t, func() bool { return n1.Stats().Total().ConnectFailures >= 3 }, "dials to the stale address fail")
	assert.Zero(t, n1.Stats().Total().Dropped[ReasonRefused], "the one-way message for nx dropped as refused")

	got := make(chan string, 1)
	nx := startNode(t, "nx", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), nil)
	nx.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
		got <- string(m.Payload)
		return nil, nil
	}))
	static.Add(cluster.Member{ID: "nx", Addr: nx.Addr().String()})
	select {
	case m := <-got:
		assert.Equal(t, "m", m)
	case <-ctx.Done():
		t.Fatal("the one-way message never reached nx at its own address")
	}
}
