package transport

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// TestARestartOnANewAddressBeforeItsEventIsServed: n2 restarts on another
// port. The membership answers Lookup with the new address at once; its
// Update event is still on its way (cluster/memberlist delivers events
// from its own goroutine), so the peer's entry still holds the old one.
// The lane dialled the new address (Lookup), then killed the connection
// it had just made because it differed from the entry's stale address,
// and wrote the queued request into it anyway: the request, never
// written, failed with ErrConnectionReset, and so did every message sent
// until the event arrived.
func TestARestartOnANewAddressBeforeItsEventIsServed(t *testing.T) {
	static := cluster.NewStatic()
	members := deferredWatch{&hookedMembership{Static: static}}
	n1 := startNode(t, "n1", members, nil)
	echo := HandlerFunc(func(ctx context.Context, m *Message) ([]byte, error) { return m.Payload, nil })
	knowsN1 := func() *cluster.Static { return cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()}) }

	old := startNode(t, "n2", knowsN1(), nil)
	old.Handle(1, echo)
	static.Add(cluster.Member{ID: "n2", Addr: old.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n1.Request(ctx, "n2", 1, []byte("before"))
	require.NoError(t, err, "setup")

	// n2 restarts elsewhere; n1's lane sees its connection end.
	require.NoError(t, old.Close())
	p := n1.peerStats("n2")
	require.Eventually(t, func() bool { return p.health[routing.Small].state.Load() != uint32(LaneConnected) },
		5*time.Second, time.Millisecond, "n1 notices n2's end")
	restarted := startNode(t, "n2", knowsN1(), nil)
	restarted.Handle(1, echo)
	static.Add(cluster.Member{ID: "n2", Addr: restarted.Addr().String()}) // Lookup knows; the event is on its way

	resp, err := n1.Request(ctx, "n2", 1, []byte("after"))
	require.NoError(t, err, "a request to n2 at the address its membership gives")
	assert.Equal(t, "after", string(resp))
	assert.Zero(t, p.outbound[routing.Small].dropped[ReasonConnectionReset].Load(), "messages dropped as reset, never written")
}
