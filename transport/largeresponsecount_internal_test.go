package transport

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
)

// TestALargeResponseIsCountedBeforeItsRoomGoesBack: a large response's
// room in the requester's inbound accounts is given back once it is
// complete, and its outcome (received, or dropped) must be counted first,
// as every other inbound message's is ("counted before the capacity goes
// back"): the janitor and a Leave judge a peer's entry quiet by that room
// (peer.quiet), and fold a quiet departed entry away — what it counts
// after that is counted nowhere. An observer that sees the room back must
// see the count. The responseReader gave the room back first (give, in
// complete, cancel and abandonAll), and counted after.
func TestALargeResponseIsCountedBeforeItsRoomGoesBack(t *testing.T) {
	static2 := cluster.NewStatic()
	n2 := startNode(t, "n2", static2, nil)
	big := make([]byte, 256<<10) // above LargeThreshold: a large response, in parts
	n2.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return big, nil }))
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), nil)
	static2.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})

	// A small request: its response comes back on the small lane's connection.
	_, err := n1.Request(context.Background(), "n2", 1, []byte("q"))
	require.NoError(t, err)
	p := n1.peerStats("n2")
	require.NotNil(t, p)
	in := &p.inbound[routing.Small]

	var stop, violations atomic.Int64
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		// counted is a count read before a moment when no room was
		// held: a response taken after that moment is counted after it
		// too, so once its room is back the count is past counted. (The
		// count read after that moment may already include a response
		// taken and counted since, whose room is still held: taken as
		// counted, it read as a violation when that room came back.)
		counted := in.received.Load()
		held := false
		for stop.Load() == 0 {
			before := in.received.Load()
			used := p.inAccount.Used() // the room, then the count
			if used > 0 {
				held = true
				continue
			}
			n := in.received.Load()
			if held && n == counted {
				violations.Add(1) // the room is back, the response not counted
			}
			if n != counted {
				held = false
			}
			counted = before
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 300 && violations.Load() == 0 && time.Now().Before(deadline); i++ {
		_, err := n1.Request(context.Background(), "n2", 1, []byte("q"))
		require.NoError(t, err)
	}
	stop.Store(1)
	<-watched
	require.Zero(t, violations.Load(), "a large response's room went back before its outcome was counted")
}
