package memberlist_test

import (
	"fmt"
	"log"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/cluster/memberlist"
)

// Two nodes on one machine: n1 starts the cluster, n2 joins through it, then
// leaves gracefully.
func ExampleJoin() {
	n1, err := memberlist.Join(memberlist.Config{
		NodeID:        "n1",
		TransportAddr: "127.0.0.1:7001", // where n1's transport listens
		BindAddr:      "127.0.0.1:0",    // gossip on any free port
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n1.Close()

	events := make(chan cluster.Event, 16)
	stop := n1.Watch(func(ev cluster.Event) { events <- ev })
	defer stop()

	n2, err := memberlist.Join(memberlist.Config{
		NodeID:        "n2",
		TransportAddr: "127.0.0.1:7002",
		BindAddr:      "127.0.0.1:0",
		Seeds:         []string{n1.GossipAddr()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n2.Close()

	next := func() {
		select {
		case ev := <-events:
			fmt.Println("n1 sees", ev.Type, ev.Member.ID, "at", ev.Member.Addr)
		case <-time.After(10 * time.Second):
			fmt.Println("timeout")
		}
	}
	next()
	for _, m := range n2.Members() {
		fmt.Println("n2 knows", m.ID, "at", m.Addr)
	}

	if err := n2.Leave(5 * time.Second); err != nil {
		log.Fatal(err)
	}
	next()
	// Output:
	// n1 sees join n2 at 127.0.0.1:7002
	// n2 knows n1 at 127.0.0.1:7001
	// n2 knows n2 at 127.0.0.1:7002
	// n1 sees leave n2 at 127.0.0.1:7002
}
