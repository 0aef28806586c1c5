package transport_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// Health says, per member and lane, whether this node can talk to it;
// Ready turns that into the answer a readiness probe wants.
func ExampleTransport_Health() {
	c, err := transporttest.Start(3, transporttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	const verbPing transport.Verb = 1
	c.HandleAll(verbPing, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, nil
	}))
	n1 := c.Nodes[0]

	// Lanes open on first use: n1 has not tried to reach anyone yet.
	h := n1.Health()
	fmt.Printf("up %d, unknown %d: ready (all) %v, ready (quorum) %v\n",
		h.Up, h.Unknown, h.Ready(transport.ReadyAll), h.Ready(transport.ReadyQuorum))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n1.Request(ctx, c.ID(1), verbPing, nil); err != nil {
		log.Fatal(err)
	}
	h = n1.Health()
	fmt.Printf("up %d, unknown %d: ready (all) %v, ready (quorum) %v\n",
		h.Up, h.Unknown, h.Ready(transport.ReadyAll), h.Ready(transport.ReadyQuorum))
	n2, _ := h.Peer(c.ID(1))
	small := n2.Lanes[routing.Small]
	fmt.Println(n2.Peer, n2.Status, small.Lane, small.State, "failures", small.ConsecutiveFailures)
	// Output:
	// up 0, unknown 2: ready (all) false, ready (quorum) false
	// up 1, unknown 1: ready (all) false, ready (quorum) true
	// n2 up small connected failures 0
}
